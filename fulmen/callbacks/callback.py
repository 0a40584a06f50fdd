"""The Callback base class: every hook a callback may implement, each doing nothing by default."""

from __future__ import annotations

from typing import Any

from torch import Tensor


class Callback:
    """Subclass and override the hooks you need. Each hook gets the Trainer and the LightningModule first.

    Callback hooks run before the module's hook of the same name. A callback with state returns it from
    ``state_dict`` and is keyed in checkpoints by ``state_key``.
    """

    # Checkpointing and early-stopping callbacks set this: they run after the module's on_train_epoch_end, so that
    # they see the metrics it logs.
    _runs_after_module_epoch_end = False

    @property
    def state_key(self) -> str:
        """The key of this callback's state in checkpoints; unique per callback instance that has state."""
        return type(self).__qualname__

    def _generate_state_key(self, **kwargs: Any) -> str:
        return f"{type(self).__qualname__}{repr(kwargs)}"

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None: """Start of fit/validate/test/predict."""
    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None: """End of fit/validate/test/predict."""
    def on_fit_start(self, trainer: Any, pl_module: Any) -> None: """"""
    def on_fit_end(self, trainer: Any, pl_module: Any) -> None: """"""
    def on_sanity_check_start(self, trainer: Any, pl_module: Any) -> None: """"""
    def on_sanity_check_end(self, trainer: Any, pl_module: Any) -> None: """"""
    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None: """"""
    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        """After the batch's optimizer step."""
    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None: """"""
    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None: """"""
    def on_validation_epoch_start(self, trainer: Any, pl_module: Any) -> None: """"""
    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None: """"""
    def on_test_epoch_start(self, trainer: Any, pl_module: Any) -> None: """"""
    def on_test_epoch_end(self, trainer: Any, pl_module: Any) -> None: """"""
    def on_predict_epoch_start(self, trainer: Any, pl_module: Any) -> None: """"""
    def on_predict_epoch_end(self, trainer: Any, pl_module: Any) -> None: """"""
    def on_validation_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int,
                                  dataloader_idx: int = 0) -> None: """"""
    def on_validation_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                                dataloader_idx: int = 0) -> None: """"""
    def on_test_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int,
                            dataloader_idx: int = 0) -> None: """"""
    def on_test_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                          dataloader_idx: int = 0) -> None: """"""
    def on_predict_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int,
                               dataloader_idx: int = 0) -> None: """"""
    def on_predict_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                             dataloader_idx: int = 0) -> None: """"""
    def on_train_start(self, trainer: Any, pl_module: Any) -> None: """"""
    def on_train_end(self, trainer: Any, pl_module: Any) -> None: """"""
    def on_validation_start(self, trainer: Any, pl_module: Any) -> None: """"""
    def on_validation_end(self, trainer: Any, pl_module: Any) -> None: """"""
    def on_test_start(self, trainer: Any, pl_module: Any) -> None: """"""
    def on_test_end(self, trainer: Any, pl_module: Any) -> None: """"""
    def on_predict_start(self, trainer: Any, pl_module: Any) -> None: """"""
    def on_predict_end(self, trainer: Any, pl_module: Any) -> None: """"""
    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        """The run is ending with ``exception`` (including KeyboardInterrupt)."""
    def state_dict(self) -> dict[str, Any]:
        """This callback's state, saved in checkpoints under ``state_key``."""
        return {}
    def load_state_dict(self, state_dict: dict[str, Any]) -> None: """Restore ``state_dict``'s output."""
    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None: """"""
    def on_load_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None: """"""
    def on_before_backward(self, trainer: Any, pl_module: Any, loss: Tensor) -> None: """"""
    def on_after_backward(self, trainer: Any, pl_module: Any) -> None: """"""
    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None: """"""
    def on_before_zero_grad(self, trainer: Any, pl_module: Any, optimizer: Any) -> None: """"""

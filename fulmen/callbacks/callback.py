"""The Callback base class: every hook a callback may implement, each doing nothing by default."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import Tensor

if TYPE_CHECKING:
    from fulmen.core.module import LightningModule
    from fulmen.trainer.trainer import Trainer


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

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Start of fit/validate/test/predict."""
    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """End of fit/validate/test/predict."""
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """``fit`` begins, after ``setup`` and ``configure_model`` and before the sanity check."""
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """``fit`` ends, after the last epoch (not called when the run raises)."""
    def on_sanity_check_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """The sanity check (``num_sanity_val_steps`` validation batches before training) begins."""
    def on_sanity_check_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """The sanity check is done; its metrics are dropped."""
    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        """Before ``training_step`` of batch ``batch_idx`` (the batch is already on the device)."""
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        """After the batch's optimizer step."""
    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """A training epoch begins (``trainer.current_epoch`` is its number)."""
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """A training epoch ends, after the module's own hook, so its epoch-level values are logged."""
    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """A validation run begins its batches."""
    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """A validation run's batches are done; its epoch-level metrics are in ``callback_metrics``."""
    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """A test run begins its batches."""
    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """A test run's batches are done; its epoch-level metrics are in ``callback_metrics``."""
    def on_predict_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """A predict run begins its batches."""
    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """A predict run's batches are done."""
    def on_validation_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int,
                                  dataloader_idx: int = 0) -> None:
        """Before ``validation_step`` of a batch of loader ``dataloader_idx``."""
    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        """After ``validation_step``; ``outputs`` is what it returned."""
    def on_test_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int,
                            dataloader_idx: int = 0) -> None:
        """Before ``test_step`` of a batch of loader ``dataloader_idx``."""
    def on_test_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        """After ``test_step``; ``outputs`` is what it returned."""
    def on_predict_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int,
                               dataloader_idx: int = 0) -> None:
        """Before ``predict_step`` of a batch of loader ``dataloader_idx``."""
    def on_predict_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                             batch_idx: int, dataloader_idx: int = 0) -> None:
        """After ``predict_step``; ``outputs`` is the prediction."""
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Training begins, after the sanity check."""
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Training has ended, after the last epoch (before ``on_fit_end``)."""
    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """A validation run begins (also the sanity check's)."""
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """A validation run ends: where checkpoints and early stopping look at the new metrics."""
    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """A test run begins."""
    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """A test run ends."""
    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """A predict run begins."""
    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """A predict run ends."""
    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        """The run is ending with ``exception`` (including KeyboardInterrupt)."""
    def state_dict(self) -> dict[str, Any]:
        """This callback's state, saved in checkpoints under ``state_key``."""
        return {}
    def load_state_dict(self, state_dict: dict[str, Any]) -> None: """Restore ``state_dict``'s output."""
    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        """A checkpoint is being saved: add to or change ``checkpoint`` (plain data only: the save checks that it
        loads with ``weights_only=True``)."""
    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        """A checkpoint is being loaded, before the callbacks' ``load_state_dict``."""
    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule, loss: Tensor) -> None:
        """Before ``loss.backward()`` (``loss`` as returned, divided for accumulation)."""
    def on_after_backward(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """After the backward pass, before gradients are unscaled and clipped."""
    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Any) -> None:
        """Before ``optimizer.step()``, with the gradients unscaled, before clipping."""
    def on_before_zero_grad(self, trainer: Trainer, pl_module: LightningModule, optimizer: Any) -> None:
        """Before ``optimizer.zero_grad()``."""

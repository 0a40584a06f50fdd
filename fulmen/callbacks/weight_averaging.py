"""Weight averaging: keep a running average of the weights (SWA, or an exponential moving average) during fit, use
it for validation, and leave it in the model when training ends."""

from __future__ import annotations

import copy
import itertools
from typing import TYPE_CHECKING, Any, Optional, Union

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_avg_fn
from typing_extensions import override

from fulmen.callbacks.callback import Callback
from fulmen.core.hooks import overrides
from fulmen.utilities.rank_zero import rank_zero_info, rank_zero_warn

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer


class WeightAveraging(Callback):
    """Average the weights after each optimizer step with ``torch.optim.swa_utils.AveragedModel``, as Lightning's
    WeightAveraging does.

    Validation runs with the averaged weights (they are swapped in at its start and out at its end), and when
    training ends the averaged weights are copied into the model. Checkpoints hold the averaged weights under
    ``state_dict`` (what ``load_from_checkpoint`` gives), the trained ones under ``current_model_state`` and the
    averaging counters under ``averaging_state``, so a resumed fit continues both.

    Args:
        device: where the averaged copy lives (default: the model's device; "cpu" saves accelerator memory).
        use_buffers: average the buffers too (batch-norm statistics); with False they are not averaged.
        **kwargs: passed to ``AveragedModel`` (``avg_fn``, ``multi_avg_fn``); the default is an equal-weight average.

    Override ``should_update(step_idx, epoch_idx)`` to choose when the average takes in the weights (by default
    after every optimizer step).
    """

    def __init__(self, device: Optional[Union[torch.device, str, int]] = None, use_buffers: bool = True,
                 **kwargs: Any) -> None:
        self._device = torch.device(device) if isinstance(device, str) else device
        self._use_buffers = use_buffers
        self._kwargs = kwargs
        self._average_model: Optional[AveragedModel] = None
        self._latest_update_step = 0
        self._latest_update_epoch = -1

    def should_update(self, step_idx: Optional[int] = None, epoch_idx: Optional[int] = None) -> bool:
        """Whether the average takes in the weights after optimizer step ``step_idx`` (0-based) or at the end of
        epoch ``epoch_idx`` (one of the two is given). Default: after every step, not at epoch ends."""
        return step_idx is not None

    @override
    def setup(self, trainer: "Trainer", pl_module: Any, stage: str) -> None:
        if stage != "fit":
            return
        from fulmen.core.module import LightningModule

        if overrides(pl_module, LightningModule, "configure_model"):
            # The averaged copy must have every layer, so the layers are made now (configure_model must be
            # idempotent, as Lightning also asks).
            rank_zero_warn("WeightAveraging with a module that overrides configure_model: the layers are built "
                           "before the averaged copy is made; sharded layers are not supported")
            pl_module.configure_model()
        device = self._device or pl_module.device
        self._average_model = AveragedModel(model=pl_module, device=device, use_buffers=self._use_buffers,
                                            **self._kwargs)

    @override
    def on_train_batch_end(self, trainer: "Trainer", pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        # Once per optimizer step: batches inside an accumulation window leave global_step unchanged.
        if trainer.global_step > self._latest_update_step and self.should_update(step_idx=trainer.global_step - 1):
            self._average().update_parameters(pl_module)
            self._latest_update_step = trainer.global_step

    @override
    def on_train_epoch_end(self, trainer: "Trainer", pl_module: Any) -> None:
        if trainer.current_epoch > self._latest_update_epoch and self.should_update(epoch_idx=trainer.current_epoch):
            self._average().update_parameters(pl_module)
            self._latest_update_epoch = trainer.current_epoch

    @override
    def on_train_end(self, trainer: "Trainer", pl_module: Any) -> None:
        for average, current in self._pairs(pl_module):
            current.data.copy_(average.data)

    @override
    def on_validation_epoch_start(self, trainer: "Trainer", pl_module: Any) -> None:
        if self._average_model is not None:
            self._swap(pl_module)

    @override
    def on_validation_epoch_end(self, trainer: "Trainer", pl_module: Any) -> None:
        if self._average_model is not None:
            self._swap(pl_module)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"latest_update_step": self._latest_update_step}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._latest_update_step = state_dict["latest_update_step"]

    @override
    def on_save_checkpoint(self, trainer: "Trainer", pl_module: Any, checkpoint: dict[str, Any]) -> None:
        if self._average_model is None:
            rank_zero_info("WeightAveraging: a checkpoint saved outside fit holds the model's weights only (after fit "
                           "they are the averaged ones)")
            return
        state = self._average_model.state_dict()
        checkpoint["current_model_state"] = checkpoint["state_dict"]
        checkpoint["state_dict"] = {k[len("module."):]: v for k, v in state.items() if k.startswith("module.")}
        checkpoint["averaging_state"] = {k: v for k, v in state.items() if not k.startswith("module.")}

    @override
    def on_load_checkpoint(self, trainer: "Trainer", pl_module: Any, checkpoint: dict[str, Any]) -> None:
        if self._average_model is None:
            rank_zero_warn("WeightAveraging: the averaging state is restored only by fit; for validate, test or "
                           "predict the checkpoint's (averaged) weights are used as they are")
        elif "current_model_state" in checkpoint and "averaging_state" in checkpoint:
            average = {f"module.{k}": v for k, v in checkpoint["state_dict"].items()}
            average.update(checkpoint["averaging_state"])
            self._average_model.load_state_dict(average)
            pl_module.load_state_dict(checkpoint["current_model_state"])
        else:
            rank_zero_warn("WeightAveraging: the checkpoint was not written with weight averaging; the average "
                           "starts from its weights")
            self._average_model.module.load_state_dict(copy.deepcopy(checkpoint["state_dict"]), strict=False)

    # ------------------------------------------------------------------------------------------ internals
    def _average(self) -> AveragedModel:
        if self._average_model is None:
            raise RuntimeError("WeightAveraging has no averaged model: it is made in setup('fit')")
        return self._average_model

    def _pairs(self, pl_module: Any) -> Any:
        average = self._average().module
        return zip(itertools.chain(average.parameters(), average.buffers()),
                   itertools.chain(pl_module.parameters(), pl_module.buffers()))

    def _swap(self, pl_module: Any) -> None:
        for average, current in self._pairs(pl_module):
            saved = average.data.clone()
            average.data.copy_(current.data)
            current.data.copy_(saved)


class EMAWeightAveraging(WeightAveraging):
    """An exponential moving average of the weights: ``average = decay * average + (1 - decay) * weights``.

    Args:
        decay: the weight of the past (0.999 by default).
        update_every_n_steps: take in the weights every N optimizer steps.
        update_starting_at_step: from this (0-based) step on; None: from the start.
        update_starting_at_epoch: also at the end of each epoch from this one on; None: never at epoch ends.
    """

    def __init__(self, device: Optional[Union[torch.device, str, int]] = None, use_buffers: bool = True,
                 decay: float = 0.999, update_every_n_steps: int = 1, update_starting_at_step: Optional[int] = None,
                 update_starting_at_epoch: Optional[int] = None, **kwargs: Any) -> None:
        super().__init__(device=device, use_buffers=use_buffers, **kwargs, avg_fn=get_ema_avg_fn(decay=decay))
        self.update_every_n_steps = update_every_n_steps
        self.update_starting_at_step = update_starting_at_step
        self.update_starting_at_epoch = update_starting_at_epoch

    @override
    def should_update(self, step_idx: Optional[int] = None, epoch_idx: Optional[int] = None) -> bool:
        if step_idx is not None:
            started = self.update_starting_at_step is None or step_idx >= self.update_starting_at_step
            if started and self.update_every_n_steps > 0 and step_idx % self.update_every_n_steps == 0:
                return True
        return (epoch_idx is not None and self.update_starting_at_epoch is not None
                and epoch_idx >= self.update_starting_at_epoch)

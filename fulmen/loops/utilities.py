"""Helpers of the training loop: stepping the learning-rate schedulers, and a check of the loss."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from fulmen.core.hooks import set_hook_name
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer


def check_finite_loss(loss: Any) -> None:
    """Raise ValueError when ``loss`` is NaN or infinite (a host-device sync: for debugging, not for every step)."""
    if loss is not None and not bool(torch.isfinite(loss).all()):
        raise ValueError(f"The loss returned in training_step is {loss}.")


def update_schedulers(trainer: "Trainer", interval: str, plateau: bool) -> None:
    """Step the schedulers of ``interval`` whose frequency is due (plateau ones only when ``plateau``)."""
    if not trainer.lr_scheduler_configs:
        return
    module = trainer.lightning_module
    if not module.automatic_optimization:  # under manual optimization the user steps the schedulers
        return
    state = trainer.state
    index = state.batch_idx if interval == "step" else state.epoch
    for config in trainer.lr_scheduler_configs:
        if config.reduce_on_plateau != plateau or config.interval != interval:
            continue
        if (index + 1) % config.frequency:
            continue
        metric = None
        if config.reduce_on_plateau:
            metric = trainer.callback_metrics.get(config.monitor)
            if metric is None:
                available = sorted(trainer.callback_metrics)
                if config.strict:
                    raise MisconfigurationException(
                        f"ReduceLROnPlateau monitors {config.monitor!r}, which was not logged; logged metrics: "
                        f"{available}. self.log({config.monitor!r}, ...) or change 'monitor' in the scheduler dict"
                    )
                rank_zero_warn(f"ReduceLROnPlateau monitors {config.monitor!r}, which was not logged; its step is "
                               "skipped (strict=False)", RuntimeWarning)
                continue
        if trainer._custom.lr_scheduler_step:
            previous = module._current_fx_name
            set_hook_name(module, "lr_scheduler_step")
            module.lr_scheduler_step(config.scheduler, metric)
            set_hook_name(module, previous)
        elif metric is None:
            config.scheduler.step()
        else:
            config.scheduler.step(metric)
        state.scheduler_steps += 1

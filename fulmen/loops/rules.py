"""The fit loop's rules: when a fit is done, may stop early, validates, and writes its step metrics.

They read the Trainer's arguments (``max_steps``, ``min_epochs``, ``val_check_interval``, ``log_every_n_steps``, ...)
and the run state; the fit loop (``fit_loop.py``) and the callbacks that follow its cadence (``LearningRateMonitor``,
``DeviceStatsMonitor``, ``ThroughputMonitor``) ask them.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from fulmen.loops.data import validation_enabled
from fulmen.utilities.rank_zero import rank_zero_info

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer


def should_sanity_check(trainer: "Trainer") -> bool:
    """Whether the fit starts with ``num_sanity_val_steps`` validation batches."""
    return trainer.num_sanity_val_steps != 0 and validation_enabled(trainer)


def fit_done(trainer: "Trainer") -> bool:
    """Whether the fit ends now: ``max_steps`` or ``max_epochs`` reached, or told to stop with the minimums met."""
    state = trainer.state
    if trainer.max_steps != -1 and state.global_step >= trainer.max_steps:
        return True
    if trainer.max_epochs != -1 and state.epoch >= trainer.max_epochs:
        return True
    return state.should_stop and can_stop_early(trainer)


def can_stop_early(trainer: "Trainer", say_why: bool = False) -> bool:
    """Whether ``min_epochs`` and ``min_steps`` are met, so that ``should_stop`` may end the fit; ``say_why``: when
    they are not, say so (as Lightning does, once per refusal)."""
    state = trainer.state
    met_epochs = state.epoch >= trainer.min_epochs if trainer.min_epochs else True
    met_steps = state.global_step >= trainer.min_steps if trainer.min_steps else True
    if met_epochs and met_steps:
        return True
    if say_why:
        rank_zero_info(f"Trainer was signaled to stop but the required min_epochs={trainer.min_epochs} or "
                       f"min_steps={trainer.min_steps} has not been met. Training will continue...")
    return False


def should_log_step(trainer: "Trainer") -> bool:
    """Whether the batch ending an accumulation window now writes its step metrics (every ``log_every_n_steps``)."""
    n = trainer.log_every_n_steps
    if n and (trainer.state.batches_that_stepped + 1) % n == 0:
        return True
    return bool(trainer.fast_dev_run) or (n != 0 and trainer.state.should_stop)


def should_validate(trainer: "Trainer", is_last: bool) -> bool:
    """Whether validation runs after this training batch (``is_last``: the epoch's last)."""
    state = trainer.state
    if not state.val_enabled:  # found once per fit by run_fit, not per batch
        return False
    n = trainer.check_val_every_n_epoch
    if n is not None and (state.epoch + 1) % n != 0:
        return False
    if state.should_stop and can_stop_early(trainer):
        return True
    if state.val_time_interval is not None:
        now = time.monotonic()
        if now - state.last_val_time >= state.val_time_interval:
            state.last_val_time = now
            return True
        return False
    if trainer.val_check_batch == float("inf"):  # no length: validate at the end of the data
        return is_last
    # Only at multiples of val_check_batch: with 5 batches and 0.5, after batches 2 and 4, not the 5th.
    count = state.total_batch_idx if n is None else state.batch_idx
    return (count + 1) % trainer.val_check_batch == 0

"""The run state: one documented object that the loops advance and the Trainer's properties read."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from fulmen.utilities.enums import LightningEnum


class TrainerStatus(LightningEnum):
    """Where the Trainer is in its life."""

    INITIALIZING = "initializing"
    RUNNING = "running"
    FINISHED = "finished"
    INTERRUPTED = "interrupted"

    @property
    def stopped(self) -> bool:
        return self in (self.FINISHED, self.INTERRUPTED)


class TrainerFn(LightningEnum):
    """The Trainer method that runs: what the user asked for."""

    FITTING = "fit"
    VALIDATING = "validate"
    TESTING = "test"
    PREDICTING = "predict"


class RunningStage(LightningEnum):
    """The loop that runs now: a fit runs the sanity check, training and validation stages in turn."""

    TRAINING = "train"
    SANITY_CHECKING = "sanity_check"
    VALIDATING = "validate"
    TESTING = "test"
    PREDICTING = "predict"

    @property
    def evaluating(self) -> bool:
        return self in (self.VALIDATING, self.TESTING, self.SANITY_CHECKING)

    @property
    def dataloader_prefix(self) -> Optional[str]:
        if self in (self.VALIDATING, self.SANITY_CHECKING):
            return "val"
        return self.value


@dataclass
class EvalCounts:
    """The batches an evaluation or predict loop has run: in its current (or last) run, and over its ``total`` (since
    the loop was last reset); whether the latest batch is the last of its loader (Lightning's ``is_last_batch``)."""

    run_done: int = 0
    total_done: int = 0
    is_last: bool = False


# The loops whose batches ``TrainerState.eval_counts`` counts: validation inside fit, validate, test and predict.
EVAL_LOOPS = ("fit_validation", "validate", "test", "predict")


@dataclass
class TrainerState:
    """Everything the loops know about where a run is.

    Attributes:
        status: initializing, running, finished or interrupted.
        fn: the Trainer method running (fit/validate/test/predict), None between runs.
        stage: the loop running now (train, sanity_check, validate, test, predict), None between runs.
        epoch: completed training epochs; ``trainer.current_epoch``. It is still N during epoch N and its end hooks.
        global_step: optimizer steps taken (under manual optimization, every ``optimizer.step()`` call).
        batches_that_stepped: training batches that ended an accumulation window; the logger's x axis.
        batch_idx: index of the current training batch within the epoch.
        total_batch_idx: training batches seen over all epochs of this fit (for ``check_val_every_n_epoch=None``).
        is_last_batch: whether the current training batch is the last of its epoch.
        should_stop: set by the user or a callback to end the fit at the next safe point.
        val_runs: how many times validation has run during this fit.
        in_epoch: whether a training epoch is under way (from on_train_epoch_start to its end), for checkpoints.
        scheduler_steps: learning-rate scheduler steps the Trainer took (one per scheduler stepped).
        epoch_batches_start, epoch_step_start, epoch_scheduler_start: ``total_batch_idx``, ``global_step`` and
            ``scheduler_steps`` when the current epoch's batches began (the loop objects' per-epoch counts).
        eval_counts: the batches run by each evaluation and predict loop (``EVAL_LOOPS``), over the Trainer's life.
        interrupted_by: the exception that ended the run early, if any.
    """

    status: TrainerStatus = TrainerStatus.INITIALIZING
    fn: Optional[TrainerFn] = None
    stage: Optional[RunningStage] = None
    epoch: int = 0
    global_step: int = 0
    batches_that_stepped: int = 0
    batch_idx: int = 0
    total_batch_idx: int = 0
    is_last_batch: bool = False
    should_stop: bool = False
    val_runs: int = 0
    in_epoch: bool = False
    scheduler_steps: int = 0
    epoch_batches_start: int = 0
    epoch_step_start: int = 0
    epoch_scheduler_start: int = 0
    eval_counts: dict[str, EvalCounts] = field(default_factory=lambda: {kind: EvalCounts() for kind in EVAL_LOOPS})
    interrupted_by: Optional[BaseException] = field(default=None, repr=False)

    @property
    def finished(self) -> bool:
        return self.status == TrainerStatus.FINISHED

    @property
    def stopped(self) -> bool:
        return self.status.stopped

    def state_dict(self) -> dict[str, Any]:
        """The loop position as plain numbers, for checkpoints."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name in ("epoch", "global_step", "batches_that_stepped", "batch_idx", "total_batch_idx", "val_runs",
                          "scheduler_steps", "epoch_scheduler_start")
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the loop position saved by ``state_dict``."""
        for key, value in state.items():
            if key in self.state_dict():
                setattr(self, key, int(value))

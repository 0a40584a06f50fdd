"""The run state: one documented object that the loops advance and the Trainer's properties read."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from fulmen.utilities.enums import LightningEnum

if TYPE_CHECKING:
    from fulmen.checkpoint.resume import ResumePlan


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


class LoopPhase(LightningEnum):
    """Where a fit is in its epoch. The fit loop sets ``TrainerState.phase`` as it passes each point; a checkpoint
    records it, and resume reads it back to know what the interrupted run still had to do (``checkpoint/resume.py``).

    ``BETWEEN_EPOCHS``: no training epoch under way, or in ``on_train_epoch_start``: resume starts that epoch.
    ``BATCH_START``: in ``on_train_batch_start`` or the step of batch k: resume runs batch k again.
    ``BATCH_END``: in ``on_train_batch_end`` of batch k or the validation after it: resume finishes batch k (the
    validation if due, plateau schedulers, counters) and goes on at batch k+1.
    ``VALIDATION_END``: in ``on_validation_end`` of that validation: as ``BATCH_END``, without the validation.
    ``BATCH_END_DONE``: batch k is finished (only ever recorded by a preemption checkpoint, or read from Lightning's
    mid-epoch files): resume goes on at batch k+1.
    ``EPOCH_END``: in ``on_train_epoch_end``: resume finishes the epoch (epoch-interval plateau schedulers).
    """

    BETWEEN_EPOCHS = "between_epochs"
    BATCH_START = "batch_start"
    BATCH_END = "batch_end"
    VALIDATION_END = "validation_end"
    BATCH_END_DONE = "batch_end_done"
    EPOCH_END = "epoch_end"

    @property
    def mid_epoch(self) -> bool:
        """Whether the epoch's batches are under way (resume picks up inside the epoch)."""
        return self in (LoopPhase.BATCH_START, LoopPhase.BATCH_END, LoopPhase.VALIDATION_END, LoopPhase.BATCH_END_DONE)

    @property
    def batch_unfinished(self) -> bool:
        """Whether batch k ran its step but not the rest of its end (validation, plateau schedulers, counters)."""
        return self in (LoopPhase.BATCH_END, LoopPhase.VALIDATION_END)


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
    """Everything the loops know about where a run is: the one object they advance, which the Trainer's properties
    (``trainer.current_epoch``, ``trainer.global_step``, ...) and the loop objects (``trainer.fit_loop`` & co.) read.

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
        phase: where the fit is in its epoch (``LoopPhase``), set by the fit loop; what a checkpoint records.
        scheduler_steps: learning-rate scheduler steps the Trainer took (one per scheduler stepped).
        epoch_batches_start, epoch_step_start, epoch_scheduler_start: ``total_batch_idx``, ``global_step`` and
            ``scheduler_steps`` when the current epoch's batches began (set after ``on_train_epoch_start``, where
            Lightning resets its epoch loop; the loop objects' per-epoch counts and the checkpoint's record).
        eval_counts: the batches run by each evaluation and predict loop (``EVAL_LOOPS``), over the Trainer's life.
        val_enabled: whether this fit validates at all (found once per fit).
        plain_step: whether the automatic step may call the torch calls directly, nothing being hooked in between
            (found once per fit; ``loops/optimization/automatic.py``).
        val_time_interval: seconds between validations when ``val_check_interval`` is a timedelta, else None.
        last_val_time: ``time.monotonic()`` of the last timed validation (or of the data's loading).
        last_train_reload: the epoch at which the training data was last loaded
            (``reload_dataloaders_every_n_epochs``).
        warned_empty_epoch: whether the warning for an epoch without batches was given in this fit.
        resume_plan: what the fit loop still has to do differently after a checkpoint was loaded (a
            ``checkpoint.resume.ResumePlan``), None once it has done it.
        epoch_start: what decided the current epoch's data order (random states, the loader's generators), for
            checkpoints taken inside the epoch.
        signal: the preemption signal received (SIGTERM, SIGUSR1 under SLURM), None without one; it stays set.
        save_position: the place a preemption checkpoint was taken at (``phase`` and the random states), fixed
            by the loop when it stops for the signal, so every save until the end records the same place.
        rng_before_validation: the random states before the validation under way, for a preemption checkpoint
            that abandons it.
        interrupted_by: the exception that ended the run early, if any.

    ``state_dict()`` holds the loop counters a checkpoint stores (plain numbers); the other fields are rebuilt by
    the run, or stored in the resume record beside them (``checkpoint/resume.py``).
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
    phase: LoopPhase = LoopPhase.BETWEEN_EPOCHS
    scheduler_steps: int = 0
    epoch_batches_start: int = 0
    epoch_step_start: int = 0
    epoch_scheduler_start: int = 0
    eval_counts: dict[str, EvalCounts] = field(default_factory=lambda: {kind: EvalCounts() for kind in EVAL_LOOPS})
    val_enabled: bool = False
    plain_step: bool = False
    val_time_interval: Optional[float] = None
    last_val_time: float = 0.0
    last_train_reload: int = 0
    warned_empty_epoch: bool = False
    resume_plan: Optional[ResumePlan] = field(default=None, repr=False)
    epoch_start: Optional[dict[str, Any]] = field(default=None, repr=False)
    signal: Optional[int] = None
    save_position: Optional[dict[str, Any]] = field(default=None, repr=False)
    rng_before_validation: Optional[dict[str, Any]] = field(default=None, repr=False)
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

"""``trainer.fit_loop.epoch_loop``: the training epoch as Lightning's loop object shows it, a view of the run state.

The batches of an epoch run in ``fit_loop.run_train_epoch``; this is what callbacks read of it: the batch, optimizer
step, gradient reset and scheduler counters (``batch_progress``, ``automatic_optimization.optim_progress``,
``manual_optimization.optim_step_progress``, ``scheduler_progress``), ``_batches_that_stepped`` and the validation
loop of the fit (``val_loop``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Union
from typing_extensions import override

from fulmen.loops.evaluation_loop import _EvaluationLoop
from fulmen.loops.loop import BEFORE_OPTIMIZER_STEP, BEFORE_ZERO_GRAD, _Loop, hook_running, training_phase
from fulmen.loops.progress import (_BatchProgress, _OptimizationProgress, _OptimizerProgress, _ProcessedTracker,
                                   _Progress, _ReadyCompletedTracker, _SchedulerProgress, _StartedTracker)
from fulmen.loops.rules import can_stop_early
from fulmen.utilities.enums import LightningEnum

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer

# How far the current batch has come in each phase: (ready, started, processed, completed) on top of the batches
# finished before it.
_BATCH_STEPS = {"batch_start": (1, 0, 0, 0), "step": (1, 1, 0, 0), "batch_end": (1, 1, 1, 0),
                "validation": (1, 1, 1, 1)}


class RestartStage(LightningEnum):
    """Where a restarted training epoch picks up (kept for Lightning's name; fulmen's resume plan decides it)."""

    NONE = "none"
    RESTARTED_MID_EPOCH = "restarted_mid_epoch"
    RESTARTED_MID_EVALUATION = "restarted_mid_evaluation"


def _tracker(cls: type, counts: tuple[int, ...]) -> Any:
    names = ("ready", "started", "processed", "completed") if cls is _ProcessedTracker else (
        ("ready", "started", "completed") if cls is _StartedTracker else ("ready", "completed"))
    return cls(**dict(zip(names, counts)))


def _progress(cls: type, total: tuple[int, ...], current: tuple[int, ...]) -> Any:
    tracker = {_BatchProgress: _ProcessedTracker, _SchedulerProgress: _ReadyCompletedTracker}.get(cls)
    return cls(total=_tracker(tracker, total), current=_tracker(tracker, current))


class _AutomaticOptimization:
    """The optimizer's counters under automatic optimization: ``optim_progress.optimizer.step`` and ``.zero_grad``
    (zero under manual optimization)."""

    def __init__(self, trainer: "Trainer") -> None:
        self.trainer = trainer

    @property
    def optim_progress(self) -> _OptimizationProgress:
        trainer = self.trainer
        state = trainer.state
        module = trainer.lightning_module
        if module is not None and not module.automatic_optimization:
            return _OptimizationProgress()
        acc = trainer.accumulate_grad_batches
        phase, fx = training_phase(trainer), hook_running(trainer)
        i = state.batch_idx
        window_start, window_end = i % acc == 0, state.is_last_batch or (i + 1) % acc == 0
        # Gradient resets: one at the first batch of each accumulation window, after its training_step.
        if phase == "batch_start" or (phase == "step" and fx in BEFORE_ZERO_GRAD | {"on_before_zero_grad",
                                                                                   "optimizer_zero_grad"}):
            done = i
        elif phase in ("step", "batch_end", "validation"):
            done = i + 1
        else:
            done = state.total_batch_idx - state.epoch_batches_start
        resets = (done + acc - 1) // acc
        ready = started = resets
        if phase == "step" and window_start and fx in ("on_before_zero_grad", "optimizer_zero_grad"):
            ready += 1
            started += fx == "optimizer_zero_grad"
        before = state.epoch_step_start
        zero_grad = _Progress(total=_StartedTracker(before + ready, before + resets, before + started),
                              current=_StartedTracker(ready, resets, started))
        # Optimizer steps: ready once the step of a window's last batch has begun, completed once it is taken.
        steps, epoch_steps = state.global_step, state.global_step - state.epoch_step_start
        pending = int(phase == "step" and window_end and fx in BEFORE_OPTIMIZER_STEP)
        step = _Progress(total=_ReadyCompletedTracker(steps + pending, steps),
                         current=_ReadyCompletedTracker(epoch_steps + pending, epoch_steps))
        return _OptimizationProgress(_OptimizerProgress(step=step, zero_grad=zero_grad))

    def state_dict(self) -> dict[str, Any]:
        return {}


class _ManualOptimization:
    """``optimizer.step()`` calls under manual optimization: ``optim_step_progress`` (zero under automatic)."""

    def __init__(self, trainer: "Trainer") -> None:
        self.trainer = trainer

    @property
    def optim_step_progress(self) -> _Progress:
        trainer = self.trainer
        state = trainer.state
        module = trainer.lightning_module
        if module is None or module.automatic_optimization:
            return _Progress.from_defaults(_ReadyCompletedTracker)
        steps = state.global_step
        pending = int(hook_running(trainer) == "on_before_optimizer_step")  # inside optimizer.step()
        # As in Lightning, the current count is never reset: it is the total.
        return _Progress(total=_ReadyCompletedTracker(steps + pending, steps),
                         current=_ReadyCompletedTracker(steps + pending, steps))

    def state_dict(self) -> dict[str, Any]:
        return {}


class _TrainingEpochLoop(_Loop):
    """``trainer.fit_loop.epoch_loop``."""

    def __init__(self, trainer: "Trainer") -> None:
        super().__init__(trainer)
        self.val_loop = _EvaluationLoop(trainer, "fit_validation")
        self.automatic_optimization = _AutomaticOptimization(trainer)
        self.manual_optimization = _ManualOptimization(trainer)

    @property
    def max_steps(self) -> int:
        return self.trainer.max_steps

    @max_steps.setter
    def max_steps(self, value: int) -> None:
        self.trainer.max_steps = value

    @property
    def min_steps(self) -> Union[int, None]:
        return self.trainer.min_steps

    @min_steps.setter
    def min_steps(self, value: Union[int, None]) -> None:
        self.trainer.min_steps = value

    @property
    def _batches_that_stepped(self) -> int:
        """Training batches that ended an accumulation window: the loggers' x axis."""
        return self.trainer.state.batches_that_stepped

    @_batches_that_stepped.setter
    def _batches_that_stepped(self, value: int) -> None:
        self.trainer.state.batches_that_stepped = value

    @property
    def global_step(self) -> int:
        return self.trainer.state.global_step

    @property
    def batch_progress(self) -> _BatchProgress:
        """Training batches: over the fit (``total``) and this epoch (``current``)."""
        state = self.trainer.state
        steps = _BATCH_STEPS.get(training_phase(self.trainer), (0, 0, 0, 0))
        done, epoch_done = state.total_batch_idx, state.total_batch_idx - state.epoch_batches_start
        progress = _progress(_BatchProgress, tuple(done + s for s in steps), tuple(epoch_done + s for s in steps))
        progress.is_last_batch = state.is_last_batch
        return progress

    @property
    def scheduler_progress(self) -> _SchedulerProgress:
        """Learning-rate scheduler steps taken by the Trainer, over the fit and this epoch."""
        state = self.trainer.state
        pending = int(hook_running(self.trainer) == "lr_scheduler_step")
        done, epoch_done = state.scheduler_steps, state.scheduler_steps - state.epoch_scheduler_start
        return _progress(_SchedulerProgress, (done + pending, done), (epoch_done + pending, epoch_done))

    @property
    def total_batch_idx(self) -> int:
        """The index of the latest training batch over the fit (-1 before the first)."""
        return self.batch_progress.total.ready - 1

    @property
    def batch_idx(self) -> int:
        """The index of the latest training batch in this epoch (-1 before the first)."""
        return self.batch_progress.current.ready - 1

    @property
    def done(self) -> bool:
        """Whether max_steps is reached, or the fit was told to stop (with min_steps met)."""
        trainer = self.trainer
        if trainer.max_steps != -1 and trainer.global_step >= trainer.max_steps:
            return True
        return trainer.should_stop and can_stop_early(trainer)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"_batches_that_stepped": self._batches_that_stepped}

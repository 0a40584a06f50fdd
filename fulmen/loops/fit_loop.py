"""The fit loop: sanity check, then epochs of training batches with validation at the configured interval; and
``trainer.fit_loop``, the view of it Lightning's users read."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional
from typing_extensions import override

from fulmen.checkpoint.preemption import stop_for_signal
from fulmen.checkpoint.resume import (capture_epoch_start, capture_rng, restore_rng, resumed_batches,
                                      warn_if_inexact)
from fulmen.loops.hooks import _noop
from fulmen.loops.evaluation_loop import run_evaluation
from fulmen.loops.data import eval_data, load_train_data, reload_data_if_due, validation_enabled
from fulmen.loops.fetchers import iterate, set_epoch
from fulmen.loops.loop import _DataSource, _Loop, training_phase
from fulmen.loops.progress import _Progress, _ProcessedTracker
from fulmen.loops.rules import can_stop_early, fit_done, should_log_step, should_sanity_check, should_validate
from fulmen.loops.training_epoch_loop import RestartStage, _TrainingEpochLoop
from fulmen.loops.optimization.automatic import plain_step
from fulmen.loops.utilities import update_schedulers
from fulmen.profilers import profiled_batches
from fulmen.trainer.states import EvalCounts, LoopPhase, RunningStage
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_warn
from fulmen.utilities.seed import isolate_rng

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer


def run_fit(trainer: "Trainer") -> None:
    """Train until max_epochs / max_steps / max_time, or until ``trainer.should_stop`` (after min_epochs/steps).

    Pseudocode::

        if validation is on and num_sanity_val_steps (and not resuming): sanity check (metrics dropped)
        train_dataloader (then val_dataloader, if the sanity check did not load it)
        [resuming from on_train_epoch_end: finish that epoch first]
        on_train_start
        while not done:
            on_train_epoch_start
            run_train_epoch                     # batches, validation every val_check_interval
            on_train_epoch_end                  # callbacks, module, then checkpoint/early-stopping callbacks
            step epoch-interval plateau schedulers; log epoch metrics; epoch += 1
        on_train_end
    """
    hooks = trainer._hooks
    state = trainer.state
    plan = state.resume_plan
    state.val_enabled = validation_enabled(trainer, warn=True)
    state.plain_step = plain_step(trainer)
    # As Lightning: a fit resumed into an epoch under way (or counted in steps: max_steps) is restarting, and has no
    # sanity check; one resumed after a finished epoch has.
    restarting = plan is not None and (plan.epoch_unfinished or trainer.max_steps != -1)
    if not restarting and should_sanity_check(trainer):
        state.stage = RunningStage.SANITY_CHECKING
        # As in Lightning, the random states are put back after the sanity check: its random draws (dropout in
        # validation_step, random val data) do not shift the ones training makes.
        with isolate_rng():
            hooks.on_sanity_check_start()
            run_evaluation(trainer, RunningStage.SANITY_CHECKING)
            hooks.on_sanity_check_end()
        trainer._metrics.drop_all()  # sanity-check metrics are never reported
        state.eval_counts["fit_validation"] = EvalCounts()  # nor counted, as in Lightning
    state.stage = RunningStage.TRAINING
    if trainer.limit_train_batches == 0:  # training skipped on purpose: the train loader is not even built
        return
    load_train_data(trainer)
    if state.val_enabled:
        eval_data(trainer, RunningStage.VALIDATING)  # without a sanity check, the val loader loads here
    if plan is not None and plan.phase == LoopPhase.EPOCH_END:
        # The checkpoint was taken in on_train_epoch_end: do what the interrupted run did after it.
        store = trainer._train_store
        store.epoch_done = True
        trainer._metrics.fold(store)
        update_schedulers(trainer, "epoch", plateau=True)
        trainer._metrics.log_epoch_end(store, step=state.batches_that_stepped - 1)
        store.reset()
        state.epoch += 1
        plan.phase = LoopPhase.BETWEEN_EPOCHS
    if fit_done(trainer):
        return
    trainer._results = trainer._train_store
    hooks.on_train_start()
    while not fit_done(trainer):
        plan = state.resume_plan
        if plan is not None and not plan.mid_epoch:
            state.resume_plan = None
            if plan.rng is not None:
                restore_rng(plan.rng)
        reload_data_if_due(trainer)
        set_epoch(trainer.train_dataloader, state.epoch)
        trainer._results = trainer._train_store  # what on_train_epoch_start logs belongs to training
        state.in_epoch = True
        state.phase = LoopPhase.BETWEEN_EPOCHS  # until the first batch starts
        hooks.on_train_epoch_start()
        if trainer._profiler is None:
            run_train_epoch(trainer)
        else:
            with trainer._profiler.profile("run_training_epoch"):
                run_train_epoch(trainer)
        state.stage = RunningStage.TRAINING
        store = trainer._results = trainer._train_store
        trainer._metrics.end_epoch(store)
        state.phase = LoopPhase.EPOCH_END
        # Monitoring callbacks are "late" in this hook group: they run after the module so they see its metrics.
        hooks.on_train_epoch_end()
        trainer._metrics.fold(store)
        update_schedulers(trainer, "epoch", plateau=True)
        trainer._metrics.log_epoch_end(store, step=state.batches_that_stepped - 1)
        store.reset()
        state.epoch += 1
        state.in_epoch = False
        state.phase = LoopPhase.BETWEEN_EPOCHS
        if trainer._signal_agreement is not None and not fit_done(trainer):
            trainer._signal_agreement.at_epoch_end()
        elif state.signal is not None and not fit_done(trainer):
            stop_for_signal(trainer)  # SIGTERM: save between epochs and exit
    if trainer._signal_agreement is not None:
        trainer._signal_agreement.close()
    hooks.on_train_end()


def run_train_epoch(trainer: "Trainer") -> None:
    """One epoch of training batches (see ``run_fit``); validation runs inside, after a batch's end hooks.

    Pseudocode::

        [resuming mid-epoch: finish the interrupted batch, skip the consumed batches at the sampler]
        for batch_idx, batch, is_last in the train loader (limited):
            transfer to device; on_train_batch_start (-1 ends the epoch)
            step: automatic (flat or closure) or manual
            step-interval schedulers (window end); epoch-interval ones on the last batch
            on_train_batch_end; log step metrics every log_every_n_steps
            finish_batch: validate if due; plateau schedulers; count the batch; stop at max_steps or should_stop
    """
    state = trainer.state
    hooks = trainer._hooks
    batch_start, batch_end = hooks.on_train_batch_start, hooks.on_train_batch_end  # skipped when no-ops
    store = trainer._train_store
    module = trainer.lightning_module
    step_fn = trainer._step_fn
    automatic = module.automatic_optimization
    accumulate = trainer.accumulate_grad_batches if automatic else 1
    transfer = trainer._transfer
    schedulers = trainer.lr_scheduler_configs
    loggers = trainer.loggers
    loader, limit = trainer.train_dataloader, trainer.num_training_batches
    trainer._results = store
    start, it = 0, None
    plan = state.resume_plan
    if plan is not None:
        state.resume_plan = None
        start = plan.batches_done
    # Where this epoch's counts start (after on_train_epoch_start, as Lightning resets its epoch loop there).
    state.epoch_batches_start = state.total_batch_idx - start
    if plan is None:  # (resumed: the checkpoint's, restored with the counters)
        state.epoch_step_start = state.global_step
        state.epoch_scheduler_start = state.scheduler_steps
    state.eval_counts["fit_validation"].total_done = 0
    if plan is not None:
        if plan.rng is not None:
            restore_rng(plan.rng)
        if plan.tail:
            state.batch_idx, state.is_last_batch = start - 1, plan.is_last_batch
            state.phase = LoopPhase.BATCH_END
            window_end = plan.is_last_batch or start % accumulate == 0
            if finish_batch(trainer, store, plan.is_last_batch, window_end, plan.phase == LoopPhase.BATCH_END) \
                    or plan.is_last_batch:
                return
        if plan.phase == LoopPhase.BATCH_END_DONE and plan.is_last_batch:
            return  # the epoch's last batch was finished: on to its end hooks
        warn_if_inexact(loader, plan)
        state.epoch_start = plan.epoch_start
        if start < limit:
            it = resumed_batches(loader, start, plan.epoch_start, plan.loader_state)
    else:
        state.epoch_start = capture_epoch_start(loader)
    batches = iterate(loader, limit, it, start)
    if trainer._profiler is not None:
        batches = profiled_batches(trainer._profiler, "[_TrainingEpochLoop].train_dataloader_next", batches)
    batch_idx = -1
    BATCH_START, BATCH_END = LoopPhase.BATCH_START, LoopPhase.BATCH_END  # (locals: set twice a batch)
    for batch_idx, batch, is_last in batches:
        state.batch_idx = batch_idx
        state.is_last_batch = is_last
        state.phase = BATCH_START
        if transfer is not None:
            batch = transfer(batch, 0)
        store.batch = batch
        if batch_start is not _noop and batch_start(batch, batch_idx) == -1:
            state.is_last_batch = True
            update_schedulers(trainer, "epoch", plateau=False)
            break
        window_end = is_last or (batch_idx + 1) % accumulate == 0
        if automatic:
            outputs = step_fn(trainer, batch, batch_idx, batch_idx % accumulate == 0, window_end)
        else:
            outputs = step_fn(trainer, batch, batch_idx)
        if schedulers and window_end:
            update_schedulers(trainer, "step", plateau=False)
        if schedulers and is_last:
            update_schedulers(trainer, "epoch", plateau=False)
        state.phase = BATCH_END
        if batch_end is not _noop:
            batch_end(outputs, batch, batch_idx)
        if window_end and loggers and should_log_step(trainer):
            trainer._metrics.log_step(store, step=state.batches_that_stepped)
        if finish_batch(trainer, store, is_last, window_end, True):
            break
    if batch_idx == -1 and start == 0:
        _no_batches(trainer)


def finish_batch(trainer: "Trainer", store: Any, is_last: bool, window_end: bool, validate: bool) -> bool:
    """The end of a training batch after its end hooks: validation if due, plateau step schedulers, the batch
    counters. Returns whether the epoch stops here (max_steps, or should_stop with min_epochs/min_steps met).

    A resumed run calls it for the batch whose end a checkpoint interrupted (``validate`` False when that
    checkpoint was taken after the validation).
    """
    state = trainer.state
    if validate and state.val_enabled and should_validate(trainer, is_last):
        if window_end:
            trainer._hooks.on_validation_model_zero_grad()
        # A signal during the validation abandons it; the checkpoint then needs the random states of now.
        state.rng_before_validation = capture_rng()
        run_evaluation(trainer, RunningStage.VALIDATING)
        trainer._results = store
        state.stage = RunningStage.TRAINING
        state.phase = LoopPhase.BATCH_END
    if window_end:
        if trainer.lr_scheduler_configs:
            update_schedulers(trainer, "step", plateau=True)
        state.batches_that_stepped += 1
    state.total_batch_idx += 1
    if trainer.max_steps != -1 and state.global_step >= trainer.max_steps:
        return True
    if trainer._signal_agreement is not None:  # several processes: stop together, at a batch they agree on
        trainer._signal_agreement.at_batch_end(state.total_batch_idx)
    elif state.signal is not None:
        stop_for_signal(trainer)  # SIGTERM: save with this batch finished and exit
    return state.should_stop and can_stop_early(trainer, say_why=True)


def _no_batches(trainer: "Trainer") -> None:
    """The training data gave nothing this epoch: an error at the start, a warning later (a spent generator)."""
    if trainer.state.epoch == 0:
        raise MisconfigurationException(
            "The training data produced no batches; check the dataset, batch_size and drop_last (or pass "
            "limit_train_batches=0 to skip training on purpose)"
        )
    if not trainer.state.warned_empty_epoch:
        trainer.state.warned_empty_epoch = True
        rank_zero_warn(
            f"The training data produced no batches in epoch {trainer.state.epoch}: a generator can be iterated only "
            "once; pass a re-iterable (a DataLoader, a list, or an object whose __iter__ starts over)"
        )


class _FitLoop(_Loop):
    """``trainer.fit_loop``: the epochs of a fit (``epoch_progress``), its limits, and the training epoch
    (``epoch_loop``), as Lightning shows them; a view of the run state."""

    def __init__(self, trainer: "Trainer") -> None:
        super().__init__(trainer)
        self.epoch_loop = _TrainingEpochLoop(trainer)
        self._data_source = _DataSource(trainer, "train")

    @property
    def max_epochs(self) -> int:
        return self.trainer.max_epochs

    @max_epochs.setter
    def max_epochs(self, value: int) -> None:
        self.trainer.max_epochs = value

    @property
    def min_epochs(self) -> Optional[int]:
        return self.trainer.min_epochs

    @min_epochs.setter
    def min_epochs(self, value: Optional[int]) -> None:
        self.trainer.min_epochs = value

    @property
    def max_steps(self) -> int:
        return self.epoch_loop.max_steps

    @max_steps.setter
    def max_steps(self, value: int) -> None:
        self.epoch_loop.max_steps = value

    @property
    def min_steps(self) -> Optional[int]:
        return self.epoch_loop.min_steps

    @min_steps.setter
    def min_steps(self, value: Optional[int]) -> None:
        self.epoch_loop.min_steps = value

    @property
    def epoch_progress(self) -> _Progress:
        """Epochs: ready at on_train_epoch_start, started with its first batch, processed at on_train_epoch_end,
        completed after it."""
        epoch = self.trainer.state.epoch
        phase = training_phase(self.trainer)
        plan = self.trainer.state.resume_plan
        if phase == "idle" and plan is not None and plan.phase != LoopPhase.BETWEEN_EPOCHS:
            # Resumed, before the loop picks the epoch up: the counts the checkpoint was taken with.
            phase = "epoch_end" if plan.phase == LoopPhase.EPOCH_END else "in_epoch"
        if phase == "idle":
            counts = (epoch, epoch, epoch, epoch)
        elif phase == "epoch_start":
            counts = (epoch + 1, epoch, epoch, epoch)
        elif phase == "epoch_end":
            counts = (epoch + 1, epoch + 1, epoch + 1, epoch)
        else:
            counts = (epoch + 1, epoch + 1, epoch, epoch)

        def tracker() -> _ProcessedTracker:
            return _ProcessedTracker(ready=counts[0], started=counts[1], processed=counts[2], completed=counts[3])

        return _Progress(total=tracker(), current=tracker())

    @property
    def total_batch_idx(self) -> int:
        return self.epoch_loop.total_batch_idx

    @property
    def batch_idx(self) -> int:
        return self.epoch_loop.batch_idx

    @property
    def max_batches(self) -> Any:
        """Training batches per epoch."""
        return self.trainer.num_training_batches

    @property
    def done(self) -> bool:
        """Whether the fit has reached max_epochs or max_steps, or was told to stop (with the minimums met)."""
        return fit_done(self.trainer)

    @property
    def skip(self) -> bool:
        """Whether there is no training to run (``limit_train_batches=0``)."""
        return self.trainer.limit_train_batches == 0

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"state_dict": {}, "epoch_progress": self.epoch_progress.state_dict(),
                "epoch_loop.state_dict": self.epoch_loop.state_dict(),
                "epoch_loop.batch_progress": self.epoch_loop.batch_progress.state_dict(),
                "epoch_loop.scheduler_progress": self.epoch_loop.scheduler_progress.state_dict(),
                "epoch_loop.automatic_optimization.optim_progress":
                    self.epoch_loop.automatic_optimization.optim_progress.state_dict(),
                "epoch_loop.manual_optimization.optim_step_progress":
                    self.epoch_loop.manual_optimization.optim_step_progress.state_dict(),
                "epoch_loop.val_loop.batch_progress": self.epoch_loop.val_loop.batch_progress.state_dict()}


__all__ = ["RestartStage"]

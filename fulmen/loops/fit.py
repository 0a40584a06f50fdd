"""The fit loop: sanity check, then epochs of training batches with validation at the configured interval."""

from __future__ import annotations

from typing import Any

from fulmen.loops.evaluate import run_evaluation
from fulmen.loops.data import eval_data, load_train_data, reload_data_if_due, validation_enabled
from fulmen.loops.fetch import iterate, set_epoch
from fulmen.loops.optimization import update_schedulers
from fulmen.state import RunningStage
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_warn


def run_fit(trainer: Any) -> None:
    """Train until max_epochs / max_steps / max_time, or until ``trainer.should_stop`` (after min_epochs/steps).

    Pseudocode::

        if validation is on and num_sanity_val_steps: sanity check (on_sanity_check_start/end, metrics dropped)
        train_dataloader (then val_dataloader, if the sanity check did not load it); on_train_start
        while not done:
            on_train_epoch_start
            run_train_epoch                     # batches, validation every val_check_interval
            on_train_epoch_end                  # callbacks, module, then checkpoint/early-stopping callbacks
            step epoch-interval plateau schedulers; log epoch metrics; epoch += 1
        on_train_end
    """
    hooks = trainer._hooks
    state = trainer.state
    trainer._val_enabled = validation_enabled(trainer)
    if trainer._should_sanity_check():
        state.stage = RunningStage.SANITY_CHECKING
        hooks.on_sanity_check_start()
        run_evaluation(trainer, RunningStage.SANITY_CHECKING)
        hooks.on_sanity_check_end()
        trainer._metrics.drop_all()  # sanity-check metrics are never reported
    state.stage = RunningStage.TRAINING
    if trainer.limit_train_batches == 0:  # training skipped on purpose: the train loader is not even built
        return
    load_train_data(trainer)
    if trainer._val_enabled:
        eval_data(trainer, RunningStage.VALIDATING)  # without a sanity check, the val loader loads here
    if trainer._fit_done():
        return
    trainer._results = trainer._train_store
    hooks.on_train_start()
    while not trainer._fit_done():
        reload_data_if_due(trainer)
        set_epoch(trainer.train_dataloader, state.epoch)
        trainer._results = trainer._train_store  # what on_train_epoch_start logs belongs to training
        hooks.on_train_epoch_start()
        run_train_epoch(trainer)
        state.stage = RunningStage.TRAINING
        store = trainer._results = trainer._train_store
        trainer._metrics.end_epoch(store)
        # Monitoring callbacks are "late" in this hook group: they run after the module so they see its metrics.
        hooks.on_train_epoch_end()
        trainer._metrics.fold(store)
        update_schedulers(trainer, "epoch", plateau=True)
        trainer._metrics.log_epoch_end(store, step=state.batches_that_stepped - 1)
        store.reset()
        state.epoch += 1
    hooks.on_train_end()


def run_train_epoch(trainer: Any) -> None:
    """One epoch of training batches (see ``run_fit``); validation runs inside, after a batch's end hooks.

    Pseudocode::

        for batch_idx, batch, is_last in the train loader (limited):
            transfer to device; on_train_batch_start (-1 ends the epoch)
            step: automatic (flat or closure) or manual
            step-interval schedulers (window end); epoch-interval ones on the last batch
            on_train_batch_end; log step metrics every log_every_n_steps
            validate if due; count the batch; stop at max_steps or should_stop
    """
    state = trainer.state
    hooks = trainer._hooks
    store = trainer._train_store
    module = trainer.lightning_module
    step_fn = trainer._step_fn
    automatic = module.automatic_optimization
    accumulate = trainer.accumulate_grad_batches if automatic else 1
    transfer = trainer._transfer
    schedulers = trainer.lr_scheduler_configs
    loggers = trainer.loggers
    stop_at_step = trainer.max_steps if trainer.max_steps != -1 else float("inf")
    trainer._results = store
    batch_idx = -1
    for batch_idx, batch, is_last in iterate(trainer.train_dataloader, trainer.num_training_batches):
        state.batch_idx = batch_idx
        state.is_last_batch = is_last
        if transfer is not None:
            batch = transfer(batch, 0)
        store.batch = batch
        if hooks.on_train_batch_start(batch, batch_idx) == -1:
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
        hooks.on_train_batch_end(outputs, batch, batch_idx)
        if window_end and loggers and trainer._should_log_step():
            trainer._metrics.log_step(store, step=state.batches_that_stepped)
        if trainer._val_enabled and trainer._should_validate(is_last):
            if window_end:
                hooks.on_validation_model_zero_grad()
            run_evaluation(trainer, RunningStage.VALIDATING)
            trainer._results = store
            state.stage = RunningStage.TRAINING
        if window_end:
            if schedulers:
                update_schedulers(trainer, "step", plateau=True)
            state.batches_that_stepped += 1
        state.total_batch_idx += 1
        if state.global_step >= stop_at_step or (state.should_stop and trainer._can_stop_early_or_say_why()):
            break
    if batch_idx == -1:
        _no_batches(trainer)


def _no_batches(trainer: Any) -> None:
    """The training data gave nothing this epoch: an error at the start, a warning later (a spent generator)."""
    if trainer.state.epoch == 0:
        raise MisconfigurationException(
            "The training data produced no batches; check the dataset, batch_size and drop_last (or pass "
            "limit_train_batches=0 to skip training on purpose)"
        )
    if not trainer._warned_empty_epoch:
        trainer._warned_empty_epoch = True
        rank_zero_warn(
            f"The training data produced no batches in epoch {trainer.state.epoch}: a generator can be iterated only "
            "once; pass a re-iterable (a DataLoader, a list, or an object whose __iter__ starts over)"
        )

"""Validation, test and the sanity check: run the eval step over each loader, aggregate what it logs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from typing_extensions import override

from fulmen.checkpoint.preemption import eval_agreement, stop_for_signal
from fulmen.core.hooks import set_hook_name
from fulmen.loops.hooks import _noop
from fulmen.loops.data import eval_data
from fulmen.loops.fetchers import iterate
from fulmen.loops.loop import _DataSource, _Loop, eval_phase
from fulmen.loops.progress import _BatchProgress, _ProcessedTracker
from fulmen.profilers import profiled, profiled_batches
from fulmen.trainer.states import EvalCounts, LoopPhase, RunningStage, TrainerFn
from fulmen.utilities.enums import LightningEnum

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer


class RestartStage(LightningEnum):
    """Where a restarted evaluation picks up (kept for Lightning's name)."""

    NONE = "none"
    RESTARTED_MID_EVALUATION = "restarted_mid_evaluation"


# Which run each evaluation loop object counts: (the Trainer method, the stages it runs).
_LOOP_STAGES = {"fit_validation": (TrainerFn.FITTING, (RunningStage.VALIDATING, RunningStage.SANITY_CHECKING)),
                "validate": (TrainerFn.VALIDATING, (RunningStage.VALIDATING,)),
                "test": (TrainerFn.TESTING, (RunningStage.TESTING,))}


class _EvaluationLoop(_Loop):
    """``trainer.validate_loop``, ``trainer.test_loop`` and ``trainer.fit_loop.epoch_loop.val_loop``: the batches
    each has run (``batch_progress``) and where its data comes from (``_data_source``)."""

    def __init__(self, trainer: "Trainer", kind: str) -> None:
        super().__init__(trainer)
        self.kind = kind
        self._data_source = _DataSource(trainer, "test" if kind == "test" else "val")

    @property
    def counts(self) -> EvalCounts:
        """The batches this loop has run (kept in the run state, which the loops advance)."""
        return self.trainer.state.eval_counts[self.kind]

    @property
    def _running(self) -> bool:
        fn, stages = _LOOP_STAGES[self.kind]
        state = self.trainer.state
        return state.fn == fn and state.stage in stages

    @property
    def batch_progress(self) -> _BatchProgress:
        counts = self.counts
        stage = "test" if self.kind == "test" else "validation"
        ready, started, processed = eval_phase(self.trainer, stage) if self._running else (0, 0, 0)

        def tracker(done: int) -> _ProcessedTracker:
            return _ProcessedTracker(ready=done + ready, started=done + started, processed=done + processed,
                                     completed=done)

        return _BatchProgress(total=tracker(counts.total_done), current=tracker(counts.run_done),
                              is_last_batch=counts.is_last)

    @property
    def verbose(self) -> bool:
        return self.trainer._verbose

    @property
    def inference_mode(self) -> bool:
        return self.trainer.inference_mode

    @property
    def max_batches(self) -> list[Any]:
        """The number of batches of each loader that a run evaluates."""
        trainer = self.trainer
        return trainer.num_test_batches if self.kind == "test" else (
            trainer.num_sanity_val_batches if trainer.sanity_checking else trainer.num_val_batches)

    @property
    def dataloaders(self) -> Any:
        return self.trainer.test_dataloaders if self.kind == "test" else self.trainer.val_dataloaders

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"state_dict": {}, "batch_progress": self.batch_progress.state_dict()}


def run_evaluation(trainer: "Trainer", stage: RunningStage) -> list[dict[str, Any]]:
    """Evaluate on every loader of ``stage`` and return one dict of epoch metrics per loader.

    Pseudocode::

        {val|test}_dataloader (first time only); skip if there are no batches
        on_{stage}_model_eval; on_{stage}_start; on_{stage}_epoch_start
        for each loader, for each batch: transfer; on_{stage}_batch_start; {stage}_step; on_{stage}_batch_end
        on_{stage}_epoch_end; on_{stage}_end; restore train/eval modes (or on_{stage}_model_train)
    """
    state = trainer.state
    testing = stage == RunningStage.TESTING
    hooks = trainer._hooks.test if testing else trainer._hooks.validation
    module = trainer.lightning_module
    data = eval_data(trainer, stage)
    limits = data.sanity_limits if stage == RunningStage.SANITY_CHECKING else data.limits
    if sum(limits) == 0:
        return []
    state.stage = stage
    counts = _counts_of(trainer, stage)
    counts.run_done, counts.is_last = 0, False
    store = data.store
    store.reset()
    trainer._results = store
    modes = {m: m.training for m in trainer.model.modules()}
    hooks.model_eval()
    hooks.start()
    if trainer._eval.get(stage) is not data and stage != RunningStage.SANITY_CHECKING:
        # on_{stage}_start rebuilt the loaders (BatchSizeFinder tuned the batch size): run on the new ones.
        data = eval_data(trainer, stage)
        limits, store = data.limits, data.store
        trainer._results = store
    hooks.epoch_start()
    step = trainer.strategy.wrap_eval_step(module, module.test_step if testing else module.validation_step)
    step_name = "test_step" if testing else "validation_step"
    autocast = trainer.precision_plugin.autocast
    profiler = trainer._profiler
    if profiler is not None:
        step = profiled(profiler, f"[Strategy]{type(trainer.strategy).__name__}.{step_name}", step)
    several = data.several
    per_loader: list[dict[str, Any]] = []
    # Validation inside fit uses no_grad (a later training step may need tensors made here); a standalone run may
    # use inference_mode, which is faster, where the strategy's tensors can be inference tensors.
    inference = trainer.inference_mode and state.fn != TrainerFn.FITTING and trainer.strategy.allows_inference_mode
    grad_off = torch.inference_mode() if inference else torch.no_grad()
    agreement = eval_agreement(trainer, sum(limits))
    last_loader = len(data.loaders) - 1
    with grad_off:
        for dl_idx, (loader, limit) in enumerate(zip(data.loaders, limits)):
            extra = (dl_idx,) if several else ()
            batches = iterate(loader, limit)
            if profiler is not None:
                batches = profiled_batches(profiler, f"[_EvaluationLoop].{'test' if testing else 'val'}_next", batches)
            for batch_idx, batch, is_last in batches:
                if trainer._transfer is not None:
                    batch = trainer._transfer(batch, dl_idx)
                counts.is_last = is_last and dl_idx == last_loader  # (Lightning's: the run's last batch)
                store.start_batch(batch, dl_idx if several else None)
                hooks.batch_start(batch, batch_idx, *extra)
                set_hook_name(module, step_name)
                if autocast is None:  # the usual case: no context to enter on every batch
                    output = step(batch, batch_idx, *extra) if data.takes_batch_idx else step(batch)
                else:
                    with autocast():
                        output = step(batch, batch_idx, *extra) if data.takes_batch_idx else step(batch)
                set_hook_name(module, None)
                hooks.batch_end(output, batch, batch_idx, *extra)
                counts.run_done += 1
                counts.total_done += 1
                if stage != RunningStage.SANITY_CHECKING:
                    trainer._metrics.log_eval_step(store, data.seen[dl_idx])
                    data.seen[dl_idx] += 1
                if agreement is not None:  # several processes: stop together, at a batch they agree on
                    agreement.at_batch_end()
                elif trainer.state.signal is not None and trainer.world_size == 1:
                    stop_for_signal(trainer)  # (in fit, several processes stop at the fit's next agreement)
            if stage != RunningStage.SANITY_CHECKING:
                trainer._metrics.fold(store)  # the last step values stay in logged_metrics, as in Lightning
            store.epoch_done = True
            per_loader.append(trainer._metrics.loader_epoch_metrics(store, stage == RunningStage.SANITY_CHECKING))
            store.epoch_done = False
        if agreement is not None:
            agreement.at_end()
        store.dataloader_idx = None
        store.epoch_done = True
        hooks.epoch_end()
    results = trainer._metrics.eval_end(store, per_loader, sanity=stage == RunningStage.SANITY_CHECKING)
    if stage == RunningStage.VALIDATING and state.fn == TrainerFn.FITTING:
        state.phase = LoopPhase.VALIDATION_END  # a checkpoint in on_validation_end: resume skips this validation
    hooks.end()
    if hooks.model_train is not _noop:
        hooks.model_train()
    else:  # give each submodule back the mode it had (a frozen, eval-mode backbone stays in eval)
        for m, training in modes.items():
            m.training = training
    if stage == RunningStage.VALIDATING:
        state.val_runs += 1
    return results


def _counts_of(trainer: "Trainer", stage: RunningStage) -> EvalCounts:
    """The batch counts a run of ``stage`` advances (what the loop objects show)."""
    if stage == RunningStage.TESTING:
        kind = "test"
    else:
        kind = "fit_validation" if trainer.state.fn == TrainerFn.FITTING else "validate"
    return trainer.state.eval_counts[kind]


def print_results(results: list[dict[str, float]], stage: RunningStage) -> None:
    """A plain-text table of the metrics of each loader, as ``Trainer.validate``/``test`` print it."""
    names = sorted({k for r in results for k in r})
    if not names:
        return
    title = f"{'Validate' if stage == RunningStage.VALIDATING else 'Test'} metric"
    headers = [title] + [f"DataLoader {i}" for i in range(len(results))]
    rows = [[name] + [f"{r[name]:.6g}" if name in r else "" for r in results] for name in names]
    widths = [max(len(row[i]) for row in [headers] + rows) for i in range(len(headers))]
    line = "-" * (sum(widths) + 3 * (len(widths) - 1))
    print(line)
    print("   ".join(h.center(w) for h, w in zip(headers, widths)))
    print(line)
    for row in rows:
        print("   ".join(c.center(w) for c, w in zip(row, widths)))
    print(line)

"""The predict loop: run predict_step over each loader and collect what it returns."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Optional

import torch
from torch.utils.data import DataLoader
from typing_extensions import override

from fulmen.loops.data import eval_data
from fulmen.loops.fetchers import iterate, with_sampler
from fulmen.loops.loop import _DataSource, _Loop, eval_phase
from fulmen.loops.progress import _ProcessedTracker, _Progress
from fulmen.profilers import profiled, profiled_batches
from fulmen.trainer.states import EvalCounts, RunningStage
from fulmen.checkpoint.preemption import eval_agreement, stop_for_signal
from fulmen.core.hooks import set_hook_name

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer


class _PredictionLoop(_Loop):
    """``trainer.predict_loop``: what the last predict run kept, as Lightning's loop shows it to callbacks such as
    ``BasePredictionWriter``: ``predictions`` (a list per loader when there are several), ``epoch_batch_indices``
    (loaders x batches x dataset indices) and ``current_batch_indices`` (the batch running); and the batches run
    (``batch_progress``)."""

    def __init__(self, trainer: "Trainer") -> None:
        super().__init__(trainer)
        self._predictions: list[list[Any]] = []
        self._several = False
        self.epoch_batch_indices: list[list[list[int]]] = []
        self.current_batch_indices: list[int] = []
        self.return_predictions = True
        self._data_source = _DataSource(trainer, "predict")

    @property
    def predictions(self) -> list[Any]:
        if not self._predictions:
            return []
        return self._predictions if self._several else self._predictions[0]

    @property
    def counts(self) -> EvalCounts:
        """The batches this loop has run (kept in the run state, which the loop advances)."""
        return self.trainer.state.eval_counts["predict"]

    @property
    def batch_progress(self) -> _Progress:
        """Predicted batches (a plain counter, as in Lightning: no ``is_last_batch``)."""
        counts = self.counts
        running = self.trainer.state.stage == RunningStage.PREDICTING
        ready, started, processed = eval_phase(self.trainer, "predict") if running else (0, 0, 0)

        def tracker(done: int) -> _ProcessedTracker:
            return _ProcessedTracker(ready=done + ready, started=done + started, processed=done + processed,
                                     completed=done)

        return _Progress(total=tracker(counts.total_done), current=tracker(counts.run_done))

    @property
    def max_batches(self) -> list[Any]:
        return self.trainer.num_predict_batches

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"state_dict": {}, "batch_progress": self.batch_progress.state_dict()}


class _RecordedBatches:
    """A batch sampler that remembers the indices of each batch it hands out, for ``batch_indices``."""

    def __init__(self, batch_sampler: Any) -> None:
        self.batch_sampler = batch_sampler
        self.seen: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        self.seen = []
        for batch in self.batch_sampler:
            self.seen.append(list(batch))
            yield batch

    def __len__(self) -> int:
        return len(self.batch_sampler)


def _recording(loader: Any) -> tuple[Any, Optional[_RecordedBatches]]:
    """``loader`` drawing its batches through a recorder, when it is a DataLoader with a batch sampler (an
    iterable dataset has no indices to record)."""
    if not isinstance(loader, DataLoader) or loader.batch_sampler is None:
        return loader, None
    recorder = _RecordedBatches(loader.batch_sampler)
    return with_sampler(loader, batch_sampler=recorder), recorder


def run_predict(trainer: "Trainer", return_predictions: bool) -> Optional[list[Any]]:
    """Predictions as a list (one list per loader when there are several), or None.

    Pseudocode::

        predict_dataloader; on_predict_model_eval; on_predict_start; on_predict_epoch_start
        for each loader, for each batch: transfer; on_predict_batch_start; predict_step; on_predict_batch_end
        on_predict_epoch_end; on_predict_end
    """
    hooks = trainer._hooks
    module = trainer.lightning_module
    data = eval_data(trainer, RunningStage.PREDICTING)
    trainer.state.stage = RunningStage.PREDICTING
    trainer._results = None  # predict hooks cannot log
    if sum(data.limits) == 0:
        return [] if return_predictions else None
    hooks.on_predict_model_eval()
    hooks.on_predict_start()
    if trainer._eval.get(RunningStage.PREDICTING) is not data:  # BatchSizeFinder rebuilt the loaders
        data = eval_data(trainer, RunningStage.PREDICTING)
    hooks.on_predict_epoch_start()
    from fulmen.callbacks.prediction_writer import BasePredictionWriter
    from fulmen.utilities.apply_to_collection import move_data_to_device

    writers = [cb for cb in trainer.callbacks if isinstance(cb, BasePredictionWriter)]
    several = data.several
    loop = trainer.predict_loop
    loop.return_predictions, loop._several = return_predictions, several
    counts = trainer.state.eval_counts["predict"]
    counts.run_done = 0
    # As in Lightning: the predictions are kept (on the host) when returned or when a writer wants them at the end.
    keep = return_predictions or any(w.interval.on_epoch for w in writers)
    predictions: list[list[Any]] = [[] for _ in data.loaders]
    loop._predictions = predictions
    loop.epoch_batch_indices = [[] for _ in data.loaders]
    inference = trainer.inference_mode and trainer.strategy.allows_inference_mode
    grad_off = torch.inference_mode() if inference else torch.no_grad()
    agreement = eval_agreement(trainer, sum(data.limits))
    step = trainer.strategy.wrap_eval_step(module, module.predict_step)
    autocast = trainer.precision_plugin.autocast
    profiler = trainer._profiler
    if profiler is not None:
        step = profiled(profiler, f"[Strategy]{type(trainer.strategy).__name__}.predict_step", step)
    with grad_off:
        for dl_idx, (loader, limit) in enumerate(zip(data.loaders, data.limits)):
            extra = (dl_idx,) if several else ()
            recorder = None
            if writers:
                loader, recorder = _recording(loader)
            batches = iterate(loader, limit)
            if profiler is not None:
                batches = profiled_batches(profiler, "[_PredictionLoop].predict_next", batches)
            for batch_idx, batch, _ in batches:
                if trainer._transfer is not None:
                    batch = trainer._transfer(batch, dl_idx)
                if recorder is not None:
                    loop.current_batch_indices = recorder.seen[batch_idx]
                    loop.epoch_batch_indices[dl_idx].append(loop.current_batch_indices)
                hooks.on_predict_batch_start(batch, batch_idx, *extra)
                set_hook_name(module, "predict_step")
                if autocast is None:  # the usual case: no context to enter on every batch
                    output = step(batch, batch_idx, *extra) if data.takes_batch_idx else step(batch)
                else:
                    with autocast():
                        output = step(batch, batch_idx, *extra) if data.takes_batch_idx else step(batch)
                set_hook_name(module, None)
                hooks.on_predict_batch_end(output, batch, batch_idx, *extra)
                counts.run_done += 1
                counts.total_done += 1
                if keep:  # (a tensor already on the host is kept as it is: what moving it would give)
                    host = type(output) is torch.Tensor and output.device.type == "cpu"
                    predictions[dl_idx].append(output if host else move_data_to_device(output, "cpu"))
                if agreement is not None:  # several processes: stop together, at a batch they agree on
                    agreement.at_batch_end()
                elif trainer.state.signal is not None:
                    stop_for_signal(trainer)
        if agreement is not None:
            agreement.at_end()
        hooks.on_predict_epoch_end()
    hooks.on_predict_end()
    if not return_predictions:
        loop._predictions = []
        return None
    return loop.predictions

"""The predict loop: run predict_step over each loader and collect what it returns."""

from __future__ import annotations

from typing import Any, Optional

import torch

from fulmen.loops.data import eval_data
from fulmen.loops.fetch import iterate
from fulmen.profilers import profiled, profiled_batches
from fulmen.state import RunningStage
from fulmen.checkpoint.preemption import stop_for_signal
from fulmen.hooks import set_hook_name


def run_predict(trainer: Any, return_predictions: bool) -> Optional[list[Any]]:
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
    several = data.several
    predictions: list[list[Any]] = [[] for _ in data.loaders]
    grad_off = torch.inference_mode() if trainer.inference_mode else torch.no_grad()
    step = trainer.strategy.wrap_eval_step(module, module.predict_step)
    profiler = trainer._profiler
    if profiler is not None:
        step = profiled(profiler, f"[Strategy]{type(trainer.strategy).__name__}.predict_step", step)
    with grad_off:
        for dl_idx, (loader, limit) in enumerate(zip(data.loaders, data.limits)):
            extra = (dl_idx,) if several else ()
            batches = iterate(loader, limit)
            if profiler is not None:
                batches = profiled_batches(profiler, "[_PredictionLoop].predict_next", batches)
            for batch_idx, batch, _ in batches:
                if trainer._transfer is not None:
                    batch = trainer._transfer(batch, dl_idx)
                hooks.on_predict_batch_start(batch, batch_idx, *extra)
                set_hook_name(module, "predict_step")
                with trainer.precision_plugin.forward_context():
                    output = step(batch, batch_idx, *extra) if data.takes_batch_idx else step(batch)
                set_hook_name(module, None)
                hooks.on_predict_batch_end(output, batch, batch_idx, *extra)
                if return_predictions:
                    predictions[dl_idx].append(output)
                if trainer._signal is not None and trainer.world_size == 1:
                    stop_for_signal(trainer)
        hooks.on_predict_epoch_end()
    hooks.on_predict_end()
    if not return_predictions:
        return None
    return predictions if several else predictions[0]

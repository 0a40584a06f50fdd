"""ThroughputMonitor: log batches, samples, items (such as tokens) and FLOPs per second, and MFU, for each stage."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Optional

import torch
from typing_extensions import override

from fulmen.callbacks.callback import Callback
from fulmen.loops.rules import should_log_step
from fulmen.trainer.states import RunningStage
from fulmen.utilities.rank_zero import rank_zero_only, rank_zero_warn
from fulmen.utilities.throughput import Throughput, available_flops_of

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer

_STAGE_OF = {"fit": RunningStage.TRAINING, "validate": RunningStage.VALIDATING, "test": RunningStage.TESTING,
             "predict": RunningStage.PREDICTING}


class ThroughputMonitor(Callback):
    """Log throughput as Lightning's ThroughputMonitor does: keys ``train/...``, ``validate/...``, ``test/...`` and
    ``predict/...`` holding ``Throughput``'s metrics (``time``, ``batches``, ``samples``, ``lengths``,
    ``device/batches_per_sec``, ``device/samples_per_sec``, ``device/items_per_sec``, ``device/flops_per_sec``,
    ``device/mfu``, ...; see ``fulmen.utilities.throughput.Throughput``).

    Training values are logged at the end of each accumulation window on the steps that ``log_every_n_steps``
    selects, at the training step axis; evaluation values every ``log_every_n_steps`` batches of the run, at the
    batch count. Training time leaves out the validation runs inside it. For FLOPs and MFU, give the module a
    ``flops_per_batch`` attribute (``fulmen.utilities.throughput.measure_flops`` counts it); MFU also needs a GPU
    whose peak is known.

    Args:
        batch_size_fn: the number of samples in a batch.
        length_fn: the number of items (such as tokens) in a batch; gives ``lengths`` and ``items_per_sec``.
        **kwargs: passed to ``Throughput`` (``window_size``, 100 by default; ``separator``).

    On CUDA each batch end waits for the device, so that the clock measures finished work: that sync is the cost
    of measuring, so leave the callback out of runs that need no figures.
    """

    def __init__(self, batch_size_fn: Callable[[Any], int], length_fn: Optional[Callable[[Any], int]] = None,
                 **kwargs: Any) -> None:
        if not callable(batch_size_fn):
            raise TypeError(f"ThroughputMonitor(batch_size_fn={batch_size_fn!r}) must be a function of the batch "
                            "that returns its number of samples, such as lambda batch: batch[0].size(0)")
        if length_fn is not None and not callable(length_fn):
            raise TypeError(f"ThroughputMonitor(length_fn={length_fn!r}) must be None or a function of the batch "
                            "that returns its number of items (such as tokens)")
        Throughput(**kwargs)  # check the arguments now, not at the first batch
        self.kwargs = kwargs
        self.batch_size_fn = batch_size_fn
        self.length_fn = length_fn
        self.available_flops: Optional[int] = None
        self._throughputs: dict[RunningStage, Throughput] = {}
        self._t0s: dict[RunningStage, float] = {}
        self._samples: dict[RunningStage, int] = {}
        self._lengths: dict[RunningStage, int] = {}
        self._batches: dict[RunningStage, int] = {}
        self._run_batches: dict[RunningStage, int] = {}  # this evaluation run's batches: its log step
        self._module_has_flops: Optional[bool] = None

    @override
    def setup(self, trainer: "Trainer", pl_module: Any, stage: str) -> None:
        self.available_flops = available_flops_of(trainer)
        stages = [_STAGE_OF[stage]]
        if stage == "fit" and trainer.enable_validation:
            stages.append(RunningStage.VALIDATING)
        for running in stages:
            self._throughputs[running] = Throughput(available_flops=self.available_flops,
                                                    world_size=trainer.world_size, **self.kwargs)

    # ------------------------------------------------------------------------------------------ hooks
    @rank_zero_only
    @override
    def on_train_start(self, trainer: "Trainer", *_: Any) -> None:
        self._start(trainer, RunningStage.TRAINING)

    @rank_zero_only
    @override
    def on_train_batch_end(self, trainer: "Trainer", pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._update(trainer, pl_module, batch, RunningStage.TRAINING)
        # Only at the end of an accumulation window, so that the time includes the optimizer step.
        window_end = trainer.is_last_batch or (batch_idx + 1) % trainer.accumulate_grad_batches == 0
        if window_end and should_log_step(trainer):
            self._compute(trainer, RunningStage.TRAINING, None)

    @rank_zero_only
    @override
    def on_validation_start(self, trainer: "Trainer", *_: Any) -> None:
        if not trainer.sanity_checking:
            self._start(trainer, RunningStage.VALIDATING)

    @rank_zero_only
    @override
    def on_validation_batch_end(self, trainer: "Trainer", pl_module: Any, outputs: Any, batch: Any, *_: Any) -> None:
        if not trainer.sanity_checking:
            self._eval_batch_end(trainer, pl_module, batch, RunningStage.VALIDATING)

    @rank_zero_only
    @override
    def on_validation_end(self, trainer: "Trainer", *_: Any) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        # Move the training clock's start forward by the time from the last training update to the end of this
        # validation, so that training rates leave validation out.
        train, val = self._throughputs[RunningStage.TRAINING], self._throughputs[RunningStage.VALIDATING]
        train_end = self._t0s[RunningStage.TRAINING] + (train._time[-1] if train._time else 0.0)
        val_end = self._t0s[RunningStage.VALIDATING] + (val._time[-1] if val._time else 0.0)
        self._t0s[RunningStage.TRAINING] += val_end - train_end

    @rank_zero_only
    @override
    def on_test_start(self, trainer: "Trainer", *_: Any) -> None:
        self._start(trainer, RunningStage.TESTING)

    @rank_zero_only
    @override
    def on_test_batch_end(self, trainer: "Trainer", pl_module: Any, outputs: Any, batch: Any, *_: Any) -> None:
        self._eval_batch_end(trainer, pl_module, batch, RunningStage.TESTING)

    @rank_zero_only
    @override
    def on_predict_start(self, trainer: "Trainer", *_: Any) -> None:
        self._start(trainer, RunningStage.PREDICTING)

    @rank_zero_only
    @override
    def on_predict_batch_end(self, trainer: "Trainer", pl_module: Any, outputs: Any, batch: Any, *_: Any) -> None:
        self._eval_batch_end(trainer, pl_module, batch, RunningStage.PREDICTING)

    # ------------------------------------------------------------------------------------------ internals
    def _start(self, trainer: "Trainer", stage: RunningStage) -> None:
        # A fit starts the counts afresh; repeated validate/test/predict calls add to theirs (as in Lightning).
        if trainer.state.fn == "fit" or stage not in self._samples:
            self._throughputs[stage].reset()
            self._samples[stage] = self._lengths[stage] = self._batches[stage] = 0
        self._run_batches[stage] = 0
        self._t0s[stage] = time.perf_counter()

    @torch.inference_mode()  # batch_size_fn and length_fn need no autograd record
    def _update(self, trainer: "Trainer", pl_module: Any, batch: Any, stage: RunningStage) -> None:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()  # the clock must see the batch's work finished, not just queued
        elapsed = time.perf_counter() - self._t0s[stage]
        if self.length_fn is not None:
            self._lengths[stage] += self.length_fn(batch)
        if self._module_has_flops is None:
            self._module_has_flops = hasattr(pl_module, "flops_per_batch")
            if not self._module_has_flops:
                rank_zero_warn(f"ThroughputMonitor logs FLOPs and MFU only when {type(pl_module).__name__} has a "
                               "flops_per_batch attribute (fulmen.utilities.throughput.measure_flops counts it)")
        self._samples[stage] += self.batch_size_fn(batch)
        self._batches[stage] += 1
        self._throughputs[stage].update(
            time=elapsed, batches=self._batches[stage], samples=self._samples[stage],
            lengths=None if self.length_fn is None else self._lengths[stage],
            flops=pl_module.flops_per_batch if self._module_has_flops else None)

    def _eval_batch_end(self, trainer: "Trainer", pl_module: Any, batch: Any, stage: RunningStage) -> None:
        self._update(trainer, pl_module, batch, stage)
        self._run_batches[stage] += 1
        step = self._run_batches[stage]
        every = trainer.log_every_n_steps
        if every and (step % every == 0 or trainer.should_stop):
            self._compute(trainer, stage, step)

    def _compute(self, trainer: "Trainer", stage: RunningStage, step: Optional[int]) -> None:
        throughput = self._throughputs[stage]
        metrics = {f"{stage.value}{throughput.separator}{k}": v for k, v in throughput.compute().items()}
        trainer._metrics.log_metrics(metrics, step=step)

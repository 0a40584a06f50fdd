"""The learning-rate range test (``Tuner.lr_find`` and the ``LearningRateFinder`` callback): the learning rate
sweeps from ``min_lr`` to ``max_lr`` over a few steps while the loss is recorded; the suggestion is where it falls
fastest."""

from __future__ import annotations

import logging
import math
import os
from typing import TYPE_CHECKING, Any, Optional, Union

import torch
from typing_extensions import override

from fulmen.callbacks.callback import Callback
from fulmen.loops.hooks import Hooks
from fulmen.tuner.trial import trial
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_info

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer

log = logging.getLogger("fulmen")


class _Sweep(torch.optim.lr_scheduler.LRScheduler):
    """The range test's learning rate, from ``min_lr`` (the optimizer's, at step 0) to ``max_lr`` at the last of
    ``steps`` steps, exponentially or linearly. As in Lightning, step k > 0 is at (k + 1) / steps of the way."""

    def __init__(self, optimizer: Any, max_lr: float, steps: int, exponential: bool) -> None:
        self.max_lr, self.steps, self.exponential = max_lr, steps, exponential
        super().__init__(optimizer)

    @override
    def get_lr(self) -> list[float]:  # type: ignore[override]
        if self.last_epoch == 0:
            return list(self.base_lrs)
        r = (self.last_epoch + 1) / self.steps
        if self.exponential:
            return [base * (self.max_lr / base) ** r for base in self.base_lrs]
        return [base + r * (self.max_lr - base) for base in self.base_lrs]


class LRFinder:
    """The result of a learning-rate range test: ``results`` ({"lr": [...], "loss": [...]}, the loss smoothed),
    ``suggestion()`` and ``plot()``."""

    def __init__(self, mode: str, lr_min: float, lr_max: float, num_training: int) -> None:
        self.mode, self.lr_min, self.lr_max, self.num_training = mode, lr_min, lr_max, num_training
        self.results: dict[str, list[float]] = {"lr": [], "loss": []}
        self._optimal_idx: Optional[int] = None

    def suggestion(self, skip_begin: int = 10, skip_end: int = 1) -> Optional[float]:
        """The learning rate where the loss falls fastest (the most negative gradient of the loss with respect to
        the learning rate), leaving out the first ``skip_begin`` and last ``skip_end`` points and any that are not
        finite; None, with an error logged, when fewer than two points are left."""
        end = len(self.results["loss"]) - skip_end
        kept = [i for i in range(skip_begin, end) if math.isfinite(self.results["loss"][i])]
        if len(kept) < 2:
            log.error("The learning rate finder has too few points for a suggestion: raise num_training, give it "
                      "more training batches (max_epochs, limit_train_batches), or lower skip_begin")
            self._optimal_idx = None
            return None
        losses = torch.tensor([self.results["loss"][i] for i in kept], dtype=torch.float64)
        lrs = torch.tensor([self.results["lr"][i] for i in kept], dtype=torch.float64)
        slopes = torch.gradient(losses, spacing=[lrs])[0]
        self._optimal_idx = kept[int(torch.argmin(slopes))]
        return self.results["lr"][self._optimal_idx]

    def plot(self, suggest: bool = False, show: bool = False, ax: Any = None,
             path: Union[None, str, os.PathLike[str]] = None) -> Any:
        """Plot the loss against the learning rate (a log axis for an exponential sweep), with the suggestion
        marked when ``suggest``; write it to ``path`` (PNG, SVG... by its suffix) when given. Returns the figure.
        Needs matplotlib (the ``plot`` extra)."""
        try:
            import matplotlib

            if ax is None and not show:
                matplotlib.use("Agg")  # no window: the figure is returned or written
            import matplotlib.pyplot as plt
        except ImportError as err:
            raise ModuleNotFoundError("LRFinder.plot needs matplotlib: pip install 'fulmen[plot]'") from err
        if ax is None:
            figure, ax = plt.subplots()
        else:
            figure = ax.figure
        ax.plot(self.results["lr"], self.results["loss"])
        if self.mode == "exponential":
            ax.set_xscale("log")
        ax.set_xlabel("Learning rate")
        ax.set_ylabel("Loss")
        if suggest and self.suggestion() is not None:
            i = self._optimal_idx
            ax.plot(self.results["lr"][i], self.results["loss"][i], markersize=10, marker="o", color="red")
        if path is not None:
            figure.savefig(os.fspath(path))
        if show:
            plt.show()
        return figure


class _LossRecorder(Callback):
    """Records the learning rate and the smoothed loss of each optimizer step; stops the sweep when it diverges."""

    beta = 0.98  # the smoothing of the range test: an exponential average, bias-corrected

    def __init__(self, finder: LRFinder, threshold: Optional[float], sweep: _Sweep) -> None:
        self.finder, self.threshold, self.sweep = finder, threshold, sweep
        self.average, self.best = 0.0, 0.0

    def _window_end(self, trainer: "Trainer", batch_idx: int) -> bool:
        return (batch_idx + 1) % trainer.accumulate_grad_batches == 0

    @override
    def on_train_batch_start(self, trainer: "Trainer", pl_module: Any, batch: Any, batch_idx: int) -> None:
        if self._window_end(trainer, batch_idx):
            self.finder.results["lr"].append(self.sweep.get_last_lr()[0])

    @override
    def on_train_batch_end(self, trainer: "Trainer", pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not self._window_end(trainer, batch_idx):
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:  # a skipped step: a point the suggestion leaves out
            self.finder.results["loss"].append(float("nan"))
            return
        step = trainer.global_step
        self.average = self.beta * self.average + (1 - self.beta) * float(loss)  # a host read: fine while tuning
        smoothed = self.average / (1 - self.beta ** (step + 1))
        diverged = self.threshold is not None and step > 1 and smoothed > self.threshold * self.best
        if trainer.world_size > 1:  # every process stops at the same step
            diverged = trainer.strategy.reduce_boolean_decision(diverged, all=False)
        if diverged:
            trainer.should_stop = True
        if smoothed < self.best or step == 1:
            self.best = smoothed
        self.finder.results["loss"].append(smoothed)


def lr_attr_name(module: Any, attr_name: str) -> str:
    """The hyperparameter the range test updates: ``attr_name``, else ``lr`` or ``learning_rate``."""
    from fulmen.utilities.parsing import first_found

    try:
        return first_found(module, ("lr", "learning_rate"), attr_name)
    except AttributeError as err:
        raise MisconfigurationException(f"LearningRateFinder(update_attr=True): {err}") from None


def find_lr(trainer: "Trainer", min_lr: float, max_lr: float, num_training: int, mode: str,
            early_stop_threshold: Optional[float]) -> LRFinder:
    """The range test (``LearningRateFinder`` runs it when the fit starts): up to ``num_training`` optimizer steps
    with the learning rate sweeping from ``min_lr`` to ``max_lr``, recording the smoothed loss, stopping early
    once it exceeds ``early_stop_threshold`` times the best so far."""
    from fulmen.loops.fit_loop import run_fit
    from fulmen.core.optimizer import LRSchedulerConfig

    if len(trainer.optimizers) != 1:
        raise MisconfigurationException(
            f"The learning rate finder sweeps one optimizer, but configure_optimizers returned "
            f"{len(trainer.optimizers)}; tune with one, or set the learning rates by hand")
    finder = LRFinder(mode, min_lr, max_lr, num_training)
    optimizer = trainer.optimizers[0]
    start = trainer.global_step
    with trial(trainer, [], max_steps=num_training):
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] = min_lr
        sweep = _Sweep(optimizer, max_lr, num_training, exponential=mode == "exponential")
        trainer.lr_scheduler_configs[:] = [LRSchedulerConfig(sweep, interval="step")]
        recorder = _LossRecorder(finder, early_stop_threshold, sweep)
        trainer.callbacks = [recorder]
        trainer._hooks = Hooks(trainer, trainer.lightning_module, [recorder])
        run_fit(trainer)
        steps = trainer.global_step - start
    if steps < num_training:
        rank_zero_info(f"The learning rate finder stopped after {steps} of {num_training} steps (the loss diverged, "
                       "or the training data ran out)")
    if trainer.world_size > 1:
        finder.results = trainer.strategy.broadcast(finder.results)
    return finder

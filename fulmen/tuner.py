"""The Tuner, as Lightning's: ``lr_find`` (a learning-rate range test) and ``scale_batch_size`` (the largest batch
that fits in memory).

Both run inside a run started for the purpose: the ``LearningRateFinder`` or ``BatchSizeFinder`` callback does its
trials when the run starts, puts the model and the Trainer back as they were, and ends the run (``TunerExit``).
Given to a Trainer as ordinary callbacks, the finders tune and then let the run go on with the value found.

A trial (``trial``) runs a few steps with no other callbacks, no loggers and no validation; afterwards the weights,
the optimizer, scheduler and gradient-scaler states, the loop counters, the Trainer's settings and the random
states are what they were, so the run that follows is the one it would have been with the tuned value set from the
start.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import logging
import math
import os
from collections.abc import Iterator
from typing import Any, Optional, Union

import torch

from fulmen.callbacks.callback import Callback
from fulmen.hooks import Hooks
from fulmen.state import RunningStage, TrainerFn
from fulmen.utilities.apply_to_collection import apply_to_collection
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.parsing import lightning_setattr
from fulmen.utilities.rank_zero import rank_zero_info
from fulmen.utilities.seed import isolate_rng

log = logging.getLogger("fulmen")

# The Trainer settings a trial changes and puts back.
_SETTINGS = ("callbacks", "loggers", "max_steps", "min_steps", "min_epochs", "limit_train_batches",
             "limit_val_batches", "limit_test_batches", "limit_predict_batches", "num_sanity_val_steps", "_hooks",
             "_wants_outputs", "_results", "_signal_agreement", "_verbose")


def _host_copy(obj: Any) -> Any:
    """A copy with every tensor on the host: the saved state must not take device memory from the trials."""
    return apply_to_collection(obj, torch.Tensor, lambda t: t.detach().to("cpu", copy=True))


@contextlib.contextmanager
def trial(trainer: Any, callbacks: list[Any], max_steps: Optional[int] = None) -> Iterator[None]:
    """Run the block with only ``callbacks``, no loggers, no validation, no sanity check and at most ``max_steps``
    more optimizer steps; then put the model and the Trainer back as they were (see the module docstring)."""
    module = trainer.lightning_module
    scaler = trainer.precision_plugin.scaler
    saved = {
        "weights": _host_copy(module.state_dict()),
        "optimizers": [_host_copy(opt.state_dict()) for opt in trainer.optimizers],
        "schedulers": list(trainer.lr_scheduler_configs),
        "scheduler_states": [copy.deepcopy(c.scheduler.state_dict()) for c in trainer.lr_scheduler_configs],
        "scaler": scaler.state_dict() if scaler is not None else {},
        "state": trainer.state.state_dict(),
        "stage": trainer.state.stage,
        "settings": {name: getattr(trainer, name) for name in _SETTINGS},
    }
    trainer.callbacks, trainer.loggers = list(callbacks), []
    trainer._hooks = Hooks(trainer, module, callbacks)
    trainer._wants_outputs = True
    trainer._signal_agreement = None  # (the Tuner runs on one process; see BatchSizeFinder.setup)
    trainer._verbose = False
    if max_steps is not None:
        trainer.max_steps = trainer.global_step + max_steps
    # A diverging range test must be able to stop at once.
    trainer.min_steps, trainer.min_epochs = None, 0
    trainer.limit_val_batches, trainer.num_sanity_val_steps = 0, 0
    try:
        with isolate_rng():
            yield
    finally:
        for name, value in saved["settings"].items():
            setattr(trainer, name, value)
        module.load_state_dict(saved["weights"])
        module.zero_grad()
        for opt, state in zip(trainer.optimizers, saved["optimizers"]):
            opt.load_state_dict(state)
        trainer.lr_scheduler_configs[:] = saved["schedulers"]
        for config, state in zip(trainer.lr_scheduler_configs, saved["scheduler_states"]):
            config.scheduler.load_state_dict(state)
        if saved["scaler"]:
            scaler.load_state_dict(saved["scaler"])
        trainer.state.load_state_dict(saved["state"])
        trainer.state.should_stop = False
        trainer.state.stage = saved["stage"]
        trainer._metrics.drop_all()
        _reload_data(trainer)


def _reload_data(trainer: Any) -> None:
    """Make the next loop ask for its loaders again (from the hooks: the batch size may have changed)."""
    trainer.train_dataloader = None
    trainer._eval.clear()


# ---------------------------------------------------------------------------------------------- the LR range test
class _Sweep(torch.optim.lr_scheduler.LRScheduler):
    """The range test's learning rate, from ``min_lr`` (the optimizer's, at step 0) to ``max_lr`` at the last of
    ``steps`` steps, exponentially or linearly. As in Lightning, step k > 0 is at (k + 1) / steps of the way."""

    def __init__(self, optimizer: Any, max_lr: float, steps: int, exponential: bool) -> None:
        self.max_lr, self.steps, self.exponential = max_lr, steps, exponential
        super().__init__(optimizer)

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

    def _window_end(self, trainer: Any, batch_idx: int) -> bool:
        return (batch_idx + 1) % trainer.accumulate_grad_batches == 0

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if self._window_end(trainer, batch_idx):
            self.finder.results["lr"].append(self.sweep.get_last_lr()[0])

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
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


def find_lr(trainer: Any, min_lr: float, max_lr: float, num_training: int, mode: str,
            early_stop_threshold: Optional[float]) -> LRFinder:
    """The range test (``LearningRateFinder`` runs it when the fit starts): up to ``num_training`` optimizer steps
    with the learning rate sweeping from ``min_lr`` to ``max_lr``, recording the smoothed loss, stopping early
    once it exceeds ``early_stop_threshold`` times the best so far."""
    from fulmen.loops.fit import run_fit
    from fulmen.optimizers import LRSchedulerConfig

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


# ---------------------------------------------------------------------------------------------- the batch size
def is_oom(error: BaseException) -> bool:
    """Whether ``error`` says that the device (or the host) ran out of memory."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    if not isinstance(error, RuntimeError):
        return False
    text = str(error)
    return any(words in text for words in (
        "CUDA out of memory", "CUDA error: out of memory", "CUDNN_STATUS_NOT_SUPPORTED", "cuDNN error: "
        "CUDNN_STATUS_NOT_SUPPORTED", "DefaultCPUAllocator: can't allocate memory", "MPS backend out of memory"))


def find_batch_size(trainer: Any, fn: TrainerFn, mode: str, steps_per_trial: int, init_val: int, max_trials: int,
                    batch_arg_name: str, margin: float, max_val: int) -> int:
    """Try batch sizes, each for ``steps_per_trial`` batches: doubling from ``init_val`` (halving while even that
    does not fit) until one runs out of memory, then, in "binsearch" mode, bisecting between the last that fit and
    the first that did not. At most ``max_trials`` trials; never above ``max_val`` or the dataset's length.

    Returns the largest size that fit (less ``margin`` in "binsearch" mode, as in Lightning) and leaves it set as
    ``batch_arg_name`` on the module or datamodule."""
    module = trainer.lightning_module
    fits, fails = 0, None  # the largest size that fit, the smallest that did not
    size = min(init_val, max_val)
    for _ in range(max_trials):
        lightning_setattr(module, batch_arg_name, size)
        try:
            length = _try(trainer, fn, steps_per_trial)
            fits = size
            rank_zero_info(f"Batch size {size} fits")
        except RuntimeError as err:  # torch.cuda.OutOfMemoryError is a RuntimeError
            if not is_oom(err):
                raise
            del err  # its traceback holds the frames, and with them the tensors of the failed step
            _free_memory()
            fails, length = size, None
            rank_zero_info(f"Batch size {size} runs out of memory")
        if fails is None:  # nothing failed yet: double, unless a limit is reached
            if size >= max_val or (length is not None and size >= length):
                break
            size = min(2 * size, max_val)
        elif fits == 0:  # not even the first fit: halve
            if size == 1:
                break
            size //= 2
        elif mode == "binsearch" and fails - fits > 1:
            size = (fits + fails) // 2
        else:
            break
    if fits == 0:
        raise MisconfigurationException(
            f"The batch size finder found no {batch_arg_name} that fits in memory (down to {size}); make the "
            "model or its inputs smaller, or use a device with more memory")
    found = max(1, int(fits * (1 - margin))) if mode == "binsearch" else fits
    lightning_setattr(module, batch_arg_name, found)
    rank_zero_info(f"The batch size finder set {batch_arg_name}={found}"
                   + (f" ({fits} less a margin of {margin:.0%})" if found != fits else ""))
    return found


def _try(trainer: Any, fn: TrainerFn, steps: int) -> Optional[int]:
    """One trial at the current batch size; returns the length of the dataset it read, if it has one."""
    from fulmen.loops.data import eval_data
    from fulmen.loops.evaluate import run_evaluation
    from fulmen.loops.fit import run_fit
    from fulmen.loops.predict import run_predict

    stage = {TrainerFn.VALIDATING: RunningStage.VALIDATING, TrainerFn.TESTING: RunningStage.TESTING,
             TrainerFn.PREDICTING: RunningStage.PREDICTING}.get(fn)
    _reload_data(trainer)
    with trial(trainer, [], max_steps=steps):
        if stage is None:
            trainer.limit_train_batches = 1.0  # as Lightning: the steps may go past the user's limit
            run_fit(trainer)
            loaders = [trainer.train_dataloader]
        else:
            setattr(trainer, f"limit_{stage.dataloader_prefix}_batches", steps)
            if stage == RunningStage.PREDICTING:
                run_predict(trainer, return_predictions=False)
            else:
                run_evaluation(trainer, stage)
            loaders = eval_data(trainer, stage).loaders
    dataset = getattr(loaders[0], "dataset", None) if loaders else None
    try:
        return len(dataset)  # type: ignore[arg-type]
    except TypeError:  # an iterable dataset, or none
        return None


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------- the Tuner
class Tuner:
    """Tune a Trainer's run before it starts: ``Tuner(trainer).lr_find(model, ...)`` and
    ``.scale_batch_size(model, ...)``, with Lightning's arguments and results."""

    def __init__(self, trainer: Any) -> None:
        self._trainer = trainer

    def lr_find(self, model: Any, train_dataloaders: Any = None, val_dataloaders: Any = None,
                dataloaders: Any = None, datamodule: Any = None, method: str = "fit", min_lr: float = 1e-8,
                max_lr: float = 1, num_training: int = 100, mode: str = "exponential",
                early_stop_threshold: Optional[float] = 4.0, update_attr: bool = True,
                attr_name: str = "") -> Optional[LRFinder]:
        """Run a learning-rate range test and return its ``LRFinder`` (None under ``fast_dev_run``); with
        ``update_attr`` the module's ``lr`` or ``learning_rate`` (or ``attr_name``) is set to the suggestion.
        The model's weights and the Trainer are as before; only that attribute changes."""
        from fulmen.callbacks.lr_finder import LearningRateFinder

        if method != "fit":
            raise MisconfigurationException(f"Tuner.lr_find(method={method!r}): the range test trains, so it "
                                            "runs with method='fit' only")
        self._check(method, train_dataloaders, val_dataloaders, dataloaders, LearningRateFinder)
        finder = LearningRateFinder(min_lr, max_lr, num_training, mode, early_stop_threshold, update_attr,
                                    attr_name)
        self._run_with(finder, method, model, train_dataloaders, val_dataloaders, dataloaders, datamodule)
        return finder.optimal_lr

    def scale_batch_size(self, model: Any, train_dataloaders: Any = None, val_dataloaders: Any = None,
                         dataloaders: Any = None, datamodule: Any = None, method: str = "fit",
                         mode: str = "power", steps_per_trial: int = 3, init_val: int = 2, max_trials: int = 25,
                         batch_arg_name: str = "batch_size", margin: float = 0.05,
                         max_val: int = 8192) -> Optional[int]:
        """The largest batch size with which ``steps_per_trial`` batches of ``method`` run without running out of
        memory (see ``BatchSizeFinder``), left set as ``batch_arg_name`` on the module or datamodule; None under
        ``fast_dev_run``."""
        from fulmen.callbacks.batch_size_finder import BatchSizeFinder

        self._check(method, train_dataloaders, val_dataloaders, dataloaders, BatchSizeFinder)
        if self._trainer.world_size > 1:
            raise MisconfigurationException(
                f"Tuner.scale_batch_size runs on one process, but the Trainer has {self._trainer.world_size}; "
                "tune on one device (Trainer(devices=1)), then train with the size found")
        finder = BatchSizeFinder(mode, steps_per_trial, init_val, max_trials, batch_arg_name, margin, max_val)
        self._run_with(finder, method, model, train_dataloaders, val_dataloaders, dataloaders, datamodule)
        return finder.optimal_batch_size

    def _check(self, method: str, train_dataloaders: Any, val_dataloaders: Any, dataloaders: Any,
               finder_type: type) -> None:
        if method not in ("fit", "validate", "test", "predict"):
            raise ValueError(f"Tuner(method={method!r}) must be 'fit', 'validate', 'test' or 'predict'")
        if method == "fit" and dataloaders is not None:
            raise MisconfigurationException("Tuner(method='fit') takes train_dataloaders= and val_dataloaders=, "
                                            "not dataloaders=")
        if method != "fit" and (train_dataloaders is not None or val_dataloaders is not None):
            raise MisconfigurationException(f"Tuner(method={method!r}) takes dataloaders=, not train_dataloaders= "
                                            "or val_dataloaders=")
        if any(isinstance(cb, finder_type) for cb in self._trainer.callbacks):
            raise ValueError(f"The Trainer already has a {finder_type.__name__} callback, which tunes every run; "
                             "remove it from Trainer(callbacks=...) to use the Tuner")

    def _run_with(self, finder: Any, method: str, model: Any, train_dataloaders: Any, val_dataloaders: Any,
                  dataloaders: Any, datamodule: Any) -> None:
        trainer = self._trainer
        finder._exit_after = True  # the run ends once the finder has tuned
        before = list(trainer.callbacks)
        trainer.callbacks = [finder, *before]
        try:
            if method == "fit":
                trainer.fit(model, train_dataloaders, val_dataloaders, datamodule)
            else:
                getattr(trainer, method)(model, dataloaders, datamodule=datamodule)
        finally:
            trainer.callbacks = before


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

from typing import TYPE_CHECKING, Any, Optional

from fulmen.tuner.lr_finder import LRFinder
from fulmen.utilities.exceptions import MisconfigurationException

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer


class Tuner:
    """Tune a Trainer's run before it starts: ``Tuner(trainer).lr_find(model, ...)`` and
    ``.scale_batch_size(model, ...)``, with Lightning's arguments and results."""

    def __init__(self, trainer: "Trainer") -> None:
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

"""LearningRateFinder: a learning-rate range test when the fit starts (what ``Tuner.lr_find`` runs)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional
from typing_extensions import override

from fulmen.callbacks.callback import Callback
from fulmen.utilities.exceptions import TunerExit
from fulmen.utilities.rank_zero import rank_zero_info, rank_zero_warn

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer


class LearningRateFinder(Callback):
    """Before training, sweep the learning rate from ``min_lr`` to ``max_lr`` over ``num_training_steps`` optimizer
    steps ("exponential" or "linear"), recording the smoothed loss; stop early once it exceeds
    ``early_stop_threshold`` times the best (None: never). Then the weights, optimizer and Trainer are put back and,
    with ``update_attr``, the module's ``lr`` or ``learning_rate`` (or ``attr_name``, on the module, its hparams or
    the datamodule) and the optimizer's learning rate are set to the suggestion; training goes on from there.

    ``optimal_lr`` holds the result: an ``LRFinder`` with ``results``, ``suggestion()`` and ``plot()``. Subclass and
    call ``lr_find(trainer, pl_module)`` from another hook to rerun the test later in training.
    """

    SUPPORTED_MODES = ("linear", "exponential")
    _runs_first = True  # as in Lightning, the finders come before the other callbacks

    def __init__(self, min_lr: float = 1e-8, max_lr: float = 1, num_training_steps: int = 100,
                 mode: str = "exponential", early_stop_threshold: Optional[float] = 4.0, update_attr: bool = True,
                 attr_name: str = "") -> None:
        mode = mode.lower()
        if mode not in self.SUPPORTED_MODES:
            raise ValueError(f"LearningRateFinder(mode={mode!r}) must be one of {self.SUPPORTED_MODES}")
        if not 0 < min_lr < max_lr:
            raise ValueError(f"LearningRateFinder(min_lr={min_lr}, max_lr={max_lr}) needs 0 < min_lr < max_lr")
        if num_training_steps < 1:
            raise ValueError(f"LearningRateFinder(num_training_steps={num_training_steps}) must be at least 1")
        self._min_lr, self._max_lr, self._num_training_steps = min_lr, max_lr, num_training_steps
        self._mode, self._early_stop_threshold = mode, early_stop_threshold
        self._update_attr, self._attr_name = update_attr, attr_name
        self._exit_after = False  # set by the Tuner: its run ends after the test
        self.optimal_lr: Any = None

    def lr_find(self, trainer: "Trainer", pl_module: Any) -> None:
        """Run the range test now (training must be set up: call it from on_fit_start or a later hook)."""
        from fulmen.tuner.lr_finder import find_lr, lr_attr_name
        from fulmen.utilities.parsing import lightning_setattr

        if trainer.fast_dev_run:
            rank_zero_warn("The learning rate finder does not run under fast_dev_run")
        else:
            name = lr_attr_name(pl_module, self._attr_name) if self._update_attr else ""
            self.optimal_lr = find_lr(trainer, self._min_lr, self._max_lr, self._num_training_steps, self._mode,
                                      self._early_stop_threshold)
            lr = self.optimal_lr.suggestion() if self._update_attr else None
            if lr is not None:
                # After the weights and optimizer came back: the suggestion is what the training goes on with.
                lightning_setattr(pl_module, name, lr)
                for optimizer in trainer.optimizers:
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                rank_zero_info(f"The learning rate finder set {name}={lr:.3g}")
        if self._exit_after:
            raise TunerExit()

    @override
    def on_fit_start(self, trainer: "Trainer", pl_module: Any) -> None:
        self.lr_find(trainer, pl_module)

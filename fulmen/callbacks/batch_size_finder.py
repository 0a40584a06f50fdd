"""BatchSizeFinder: the largest batch size that fits in memory, found when the run starts (what
``Tuner.scale_batch_size`` runs)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional
from typing_extensions import override

from fulmen.callbacks.callback import Callback
from fulmen.trainer.states import RunningStage, TrainerFn
from fulmen.utilities.exceptions import MisconfigurationException, TunerExit
from fulmen.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer


class BatchSizeFinder(Callback):
    """When the run starts (fit, validate, test or predict), try batch sizes for ``steps_per_trial`` batches each
    and keep the largest that does not run out of device memory: "power" doubles from ``init_val`` until one fails;
    "binsearch" then bisects between the last that fit and the first that did not, and takes ``margin`` off the
    result. At most ``max_trials`` trials, never above ``max_val`` or the length of the dataset.

    The size is read and set as ``batch_arg_name`` on the module, its hparams, or the datamodule; the loaders are
    rebuilt from the ``*_dataloader`` hooks with it, so data given straight to ``fit`` cannot be tuned. After the
    trials the weights, the optimizer and the Trainer are as they were. ``optimal_batch_size`` holds the result.
    """

    SUPPORTED_MODES = ("power", "binsearch")
    _runs_first = True  # as in Lightning, the finders come before the other callbacks

    def __init__(self, mode: str = "power", steps_per_trial: int = 3, init_val: int = 2, max_trials: int = 25,
                 batch_arg_name: str = "batch_size", margin: float = 0.05, max_val: int = 8192) -> None:
        mode = mode.lower()
        if mode not in self.SUPPORTED_MODES:
            raise ValueError(f"BatchSizeFinder(mode={mode!r}) must be one of {self.SUPPORTED_MODES}")
        if not 0.0 <= margin < 1.0:
            raise ValueError(f"BatchSizeFinder(margin={margin}) must be at least 0 and below 1")
        for name, value in (("steps_per_trial", steps_per_trial), ("init_val", init_val),
                            ("max_trials", max_trials), ("max_val", max_val)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"BatchSizeFinder({name}={value!r}) must be a positive int")
        self._mode, self._steps_per_trial, self._init_val = mode, steps_per_trial, init_val
        self._max_trials, self._batch_arg_name, self._margin, self._max_val = max_trials, batch_arg_name, margin, max_val
        self._exit_after = False  # set by the Tuner: its run ends after the search
        self.optimal_batch_size: Optional[int] = init_val

    @override
    def setup(self, trainer: "Trainer", pl_module: Any, stage: Optional[str] = None) -> None:
        from fulmen.utilities.parsing import lightning_hasattr

        if trainer.world_size > 1:
            raise MisconfigurationException(
                f"BatchSizeFinder runs on one process, but the Trainer has {trainer.world_size}; find the size with "
                "Trainer(devices=1), then train with it")
        given = trainer._train_source if stage == TrainerFn.FITTING else next(
            (v for v in trainer._eval_sources.values() if v is not None), None)
        if given is not None:
            raise MisconfigurationException(
                "BatchSizeFinder rebuilds the loaders with each batch size, so it cannot tune loaders passed to the "
                "Trainer method; build them in the module's or a datamodule's *_dataloader() hook from "
                f"self.{self._batch_arg_name}")
        if not lightning_hasattr(pl_module, self._batch_arg_name):
            raise MisconfigurationException(
                f"BatchSizeFinder(batch_arg_name={self._batch_arg_name!r}): no such attribute or hparam on "
                f"{type(pl_module).__name__} or its datamodule; set self.{self._batch_arg_name} in __init__ and "
                "use it in the *_dataloader() hooks")
        if self._batch_arg_name in pl_module.__dict__ and self._batch_arg_name in pl_module.hparams:
            rank_zero_warn(f"{type(pl_module).__name__} has both self.{self._batch_arg_name} and "
                           f"self.hparams.{self._batch_arg_name}; the search starts from the attribute and sets both")

    def scale_batch_size(self, trainer: "Trainer", pl_module: Any) -> None:
        """Run the search now, for the Trainer method running."""
        from fulmen.loops.data import eval_data
        from fulmen.tuner.batch_size_scaling import find_batch_size

        fn = trainer.state.fn
        if trainer.fast_dev_run:
            rank_zero_warn("The batch size finder does not run under fast_dev_run")
            self.optimal_batch_size = None
        else:
            if fn != TrainerFn.FITTING:
                stage = {TrainerFn.VALIDATING: RunningStage.VALIDATING, TrainerFn.TESTING: RunningStage.TESTING,
                         TrainerFn.PREDICTING: RunningStage.PREDICTING}[fn]
                if len(eval_data(trainer, stage).loaders) > 1:
                    raise MisconfigurationException(
                        f"BatchSizeFinder tunes one {stage.dataloader_prefix} loader, but there are several; tune "
                        "with one")
            self.optimal_batch_size = find_batch_size(
                trainer, fn, self._mode, self._steps_per_trial, self._init_val, self._max_trials,
                self._batch_arg_name, self._margin, self._max_val)
        if self._exit_after:
            raise TunerExit()

    @override
    def on_fit_start(self, trainer: "Trainer", pl_module: Any) -> None:
        self.scale_batch_size(trainer, pl_module)

    @override
    def on_validation_start(self, trainer: "Trainer", pl_module: Any) -> None:
        if trainer.state.fn == TrainerFn.VALIDATING and not trainer.sanity_checking:
            self.scale_batch_size(trainer, pl_module)

    @override
    def on_test_start(self, trainer: "Trainer", pl_module: Any) -> None:
        self.scale_batch_size(trainer, pl_module)

    @override
    def on_predict_start(self, trainer: "Trainer", pl_module: Any) -> None:
        self.scale_batch_size(trainer, pl_module)

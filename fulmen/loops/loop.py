"""What the loop objects share (``trainer.fit_loop``, ``validate_loop``, ``test_loop``, ``predict_loop``): where a
run is inside a batch, and the data source of a loop.

fulmen's loops are functions over one run state (``TrainerState``); the loop objects Lightning users read are views
of it. The counters they show change at points inside a batch (a batch is "ready" at ``on_train_batch_start``,
"processed" at ``on_train_batch_end``, ...), which fulmen does not mark as it runs: a view works out where the
run is from the stage and the hook running now, when it is read. Reading costs a few integer operations; the loops
pay nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, Optional, TypeVar, overload

from fulmen.trainer.states import RunningStage, TrainerFn
from fulmen.utilities.model_helpers import is_overridden

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer

# Hooks of a training batch in Lightning's order; in each, the batch is ready and started (its step runs).
STEP_HOOKS = frozenset({
    "training_step", "forward", "on_before_zero_grad", "optimizer_zero_grad", "on_before_backward", "backward",
    "on_after_backward", "manual_backward", "on_before_optimizer_step", "configure_gradient_clipping",
    "clip_gradients", "optimizer_step", "lr_scheduler_step",
})
# ... and those of them that come before the optimizer step of the batch (its ready count is up, its completed not).
BEFORE_OPTIMIZER_STEP = STEP_HOOKS - {"lr_scheduler_step"}
BEFORE_ZERO_GRAD = frozenset({"training_step", "forward"})


def hook_running(trainer: "Trainer") -> Optional[str]:
    """The module or callback hook running now (None outside the Trainer's hooks)."""
    module = trainer.lightning_module
    return module._current_fx_name if module is not None else None


def training_phase(trainer: "Trainer") -> str:
    """Where the fit is: "idle" (not in a training epoch), "epoch_start", "batch_start", "step", "batch_end",
    "validation" (after a batch's end hooks, before the next batch), or "epoch_end"."""
    state = trainer.state
    if state.fn != TrainerFn.FITTING or not state.in_epoch:
        return "idle"
    fx = hook_running(trainer)
    if state.stage == RunningStage.VALIDATING or fx == "on_validation_model_zero_grad":
        return "validation"
    if fx == "on_train_epoch_start":
        return "epoch_start"
    if fx == "on_train_epoch_end":
        return "epoch_end"
    if fx == "on_train_batch_start":
        return "batch_start"
    if fx == "on_train_batch_end":
        return "batch_end"
    if fx in STEP_HOOKS:
        return "step"
    return "between"


def eval_phase(trainer: "Trainer", stage: str) -> tuple[int, int, int]:
    """How far the evaluation batch running now has come, as (ready, started, processed) increments: its
    ``on_{stage}_batch_start`` makes it ready, its step starts it, ``on_{stage}_batch_end`` has it processed."""
    fx = hook_running(trainer)
    if fx == f"on_{stage}_batch_start":
        return 1, 0, 0
    if fx == f"{stage}_step" or fx == "forward":
        return 1, 1, 0
    if fx == f"on_{stage}_batch_end":
        return 1, 1, 1
    return 0, 0, 0


class _DataSource:
    """Where a loop's data comes from (Lightning's ``_DataLoaderSource``): loaders given to the Trainer's method,
    else the datamodule, else the module; ``name`` is the hook that gives them ("val_dataloader", ...)."""

    def __init__(self, trainer: "Trainer", prefix: str) -> None:
        self._trainer = trainer
        self._prefix = prefix
        self.name = f"{prefix}_dataloader"

    @property
    def instance(self) -> Any:
        trainer = self._trainer
        given = trainer._train_source if self._prefix == "train" else trainer._eval_sources.get(self._prefix)
        if given is not None:
            return given
        return trainer.datamodule if trainer.datamodule is not None else trainer.lightning_module

    def is_module(self) -> bool:
        """Whether the data comes from a module's or datamodule's hook."""
        from fulmen.core.datamodule import LightningDataModule
        from fulmen.core.module import LightningModule

        return isinstance(self.instance, (LightningModule, LightningDataModule))

    def is_defined(self) -> bool:
        """Whether there is data: loaders were given, or the module (datamodule) defines the hook."""
        return not self.is_module() or is_overridden(self.name, self.instance)

    def dataloader(self) -> Any:
        """The loaders: the given ones, or what the hook returns (calling it)."""
        instance = self.instance
        return getattr(instance, self.name)() if self.is_module() else instance


class _Loop:
    """A loop object: a view of the Trainer's run state."""

    def __init__(self, trainer: "Trainer") -> None:
        self.trainer = trainer

    @property
    def restarting(self) -> bool:
        """Whether the loop is picking up a run from a checkpoint (until its first batch runs)."""
        return self.trainer.state.resume_plan is not None

    def state_dict(self) -> dict[str, Any]:
        """The loop's counters, as Lightning saves them in a checkpoint's ``loops`` entry."""
        return {"state_dict": {}}

    def load_state_dict(self, state_dict: dict[str, Any], prefix: str = "") -> None:
        """The counters come back with the run state, when the Trainer resumes from a checkpoint."""


L = TypeVar("L", bound=_Loop)


class LoopAttribute(Generic[L]):
    """A Trainer attribute that holds one of its loop objects (``trainer.fit_loop``, ...): set once when the Trainer
    is made, read as usual, and never replaced. A replacement would be a silent no-op, as the loops are functions
    that do not consult it, so it raises instead."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, trainer: None, owner: type) -> LoopAttribute[L]: ...
    @overload
    def __get__(self, trainer: object, owner: type) -> L: ...
    def __get__(self, trainer: "Trainer", owner: type) -> Any:
        return self if trainer is None else trainer.__dict__[self.name]

    def __set__(self, trainer: "Trainer", loop: L) -> None:
        if self.name in trainer.__dict__:
            raise AttributeError(
                f"trainer.{self.name} = {type(loop).__name__}(...): fulmen's loops cannot be replaced (trainer."
                f"{self.name} is a read-only view of the run); change what a loop does through the LightningModule's "
                "hooks or a Callback, and its limits through trainer.fit_loop.max_epochs and the like")
        trainer.__dict__[self.name] = loop

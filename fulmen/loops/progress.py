"""Lightning's progress counters, as ``trainer.fit_loop`` and the other loop objects show them.

Each counter counts batches (or epochs, optimizer steps, ...) as they go through their stages: ``ready`` (fetched),
``started``, ``processed`` (its step done) and ``completed`` (its end hooks done), over the whole run (``total``) and
since the last reset (``current``: this epoch, this evaluation run). fulmen does not count while it runs: the loop
views work the values out from the run state when they are read, and hand out these objects as snapshots.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any
from typing_extensions import override


@dataclass
class _ReadyCompletedTracker:
    """How many have been made ready and how many completed."""

    ready: int = 0
    completed: int = 0

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for key, value in state_dict.items():
            setattr(self, key, value)

    def reset(self) -> None:
        for key in self.state_dict():
            setattr(self, key, 0)


@dataclass
class _StartedTracker(_ReadyCompletedTracker):
    """As ``_ReadyCompletedTracker``, with how many have started."""

    started: int = 0


@dataclass
class _ProcessedTracker(_StartedTracker):
    """As ``_StartedTracker``, with how many have been processed (their step done, their end hooks not yet)."""

    processed: int = 0


@dataclass
class _Progress:
    """A counter over the whole run (``total``) and since its last reset (``current``)."""

    total: _ReadyCompletedTracker = field(default_factory=_ProcessedTracker)
    current: _ReadyCompletedTracker = field(default_factory=_ProcessedTracker)

    @classmethod
    def from_defaults(cls, tracker: type, **kwargs: int) -> "_Progress":
        return cls(total=tracker(**kwargs), current=tracker(**kwargs))

    def state_dict(self) -> dict[str, Any]:
        return {"total": self.total.state_dict(), "current": self.current.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.total.load_state_dict(state_dict["total"])
        self.current.load_state_dict(state_dict["current"])


@dataclass
class _BatchProgress(_Progress):
    """Batches, with whether the last one read is the last of its epoch or evaluation run."""

    is_last_batch: bool = False

    @override
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "is_last_batch": self.is_last_batch}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.is_last_batch = state_dict["is_last_batch"]


@dataclass
class _SchedulerProgress(_Progress):
    """Learning-rate scheduler steps."""

    total: _ReadyCompletedTracker = field(default_factory=_ReadyCompletedTracker)
    current: _ReadyCompletedTracker = field(default_factory=_ReadyCompletedTracker)


@dataclass
class _OptimizerProgress:
    """One optimizer's steps and gradient resets."""

    step: _Progress = field(default_factory=lambda: _Progress.from_defaults(_ReadyCompletedTracker))
    zero_grad: _Progress = field(default_factory=lambda: _Progress.from_defaults(_StartedTracker))

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step.state_dict(), "zero_grad": self.zero_grad.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.step.load_state_dict(state_dict["step"])
        self.zero_grad.load_state_dict(state_dict["zero_grad"])


@dataclass
class _OptimizationProgress:
    """The optimizer's progress under automatic optimization; ``optimizer_steps`` is what ``global_step`` counts."""

    optimizer: _OptimizerProgress = field(default_factory=_OptimizerProgress)

    @property
    def optimizer_steps(self) -> int:
        return self.optimizer.step.total.completed

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state_dict["optimizer"])

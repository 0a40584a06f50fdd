"""Timer: stop training once a wall-clock budget is spent (what ``Trainer(max_time=...)`` adds)."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Optional, Union
from typing_extensions import override

from fulmen.callbacks.callback import Callback
from fulmen.resolve import max_time
from fulmen.utilities.enums import LightningEnum
from fulmen.utilities.rank_zero import rank_zero_info

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer


class Interval(LightningEnum):
    """When Timer checks the clock: after every training batch, or after every epoch."""

    step = "step"
    epoch = "epoch"


class Timer(Callback):
    """Track the time spent in each stage, and set ``trainer.should_stop`` once ``duration`` has passed.

    ``duration``: 'DD:HH:MM:SS', a timedelta or a dict of timedelta arguments. ``interval``: check after every
    training batch ("step") or every epoch ("epoch").
    """

    def __init__(self, duration: Optional[Union[str, timedelta, dict[str, int]]] = None, interval: str = "step",
                 verbose: bool = True) -> None:
        if interval not in set(Interval):
            raise ValueError(f"Timer(interval={interval!r}) is not supported; choose 'step' or 'epoch'")
        delta = max_time("max_time", duration)
        self._duration = delta.total_seconds() if delta is not None else None
        self._interval = interval
        self._verbose = verbose
        self._start: dict[str, Optional[float]] = {}
        self._end: dict[str, Optional[float]] = {}
        self._offset = 0.0

    def start_time(self, stage: str = "train") -> Optional[float]:
        return self._start.get(stage)

    def end_time(self, stage: str = "train") -> Optional[float]:
        return self._end.get(stage)

    def time_elapsed(self, stage: str = "train") -> float:
        start = self._start.get(stage)
        end = self._end.get(stage)
        offset = self._offset if stage == "train" else 0.0
        if start is None:
            return offset
        return offset + ((end if end is not None else time.monotonic()) - start)

    def time_remaining(self, stage: str = "train") -> Optional[float]:
        return None if self._duration is None else self._duration - self.time_elapsed(stage)

    def _begin(self, stage: str) -> None:
        self._start[stage] = time.monotonic()
        self._end[stage] = None

    def _finish(self, stage: str) -> None:
        self._end[stage] = time.monotonic()

    @override
    def on_train_start(self, trainer: "Trainer", pl_module: Any) -> None:
        self._begin("train")

    @override
    def on_train_end(self, trainer: "Trainer", pl_module: Any) -> None:
        self._finish("train")

    @override
    def on_validation_start(self, trainer: "Trainer", pl_module: Any) -> None:
        self._begin("validate")

    @override
    def on_validation_end(self, trainer: "Trainer", pl_module: Any) -> None:
        self._finish("validate")

    @override
    def on_test_start(self, trainer: "Trainer", pl_module: Any) -> None:
        self._begin("test")

    @override
    def on_test_end(self, trainer: "Trainer", pl_module: Any) -> None:
        self._finish("test")

    @override
    def on_fit_start(self, trainer: "Trainer", pl_module: Any) -> None:
        # Check right away: a resumed run may have spent its budget already.
        if self._duration is not None and self._offset >= self._duration:
            trainer.should_stop = True

    @override
    def on_train_batch_end(self, trainer: "Trainer", pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._interval == "step":
            self._check(trainer)

    @override
    def on_train_epoch_end(self, trainer: "Trainer", pl_module: Any) -> None:
        if self._interval == "epoch":
            self._check(trainer)

    def _check(self, trainer: "Trainer") -> None:
        if self._duration is None or self.time_elapsed("train") < self._duration:
            return
        trainer.should_stop = True
        if self._verbose:
            rank_zero_info(f"Time limit reached. Elapsed time is {timedelta(seconds=int(self.time_elapsed()))}. "
                           "Signaling Trainer to stop.")

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"time_elapsed": {stage: self.time_elapsed(stage) for stage in self._start}}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._offset = float(state_dict.get("time_elapsed", {}).get("train", 0.0))

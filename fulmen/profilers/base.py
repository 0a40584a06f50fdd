"""PassThroughProfiler: the profiler of a run without one (it records nothing)."""

from __future__ import annotations
from typing_extensions import override

from fulmen.profilers.profiler import Profiler


class PassThroughProfiler(Profiler):
    """Records nothing (``Trainer(profiler=None)``)."""

    @override
    def start(self, action_name: str) -> None:
        """Nothing to record."""

    @override
    def stop(self, action_name: str) -> None:
        """Nothing to record."""

"""PassThroughProfiler: the profiler of a run without one (it records nothing)."""

from __future__ import annotations

from fulmen.profilers.profiler import Profiler


class PassThroughProfiler(Profiler):
    """Records nothing (``Trainer(profiler=None)``)."""

    def start(self, action_name: str) -> None:
        """Nothing to record."""

    def stop(self, action_name: str) -> None:
        """Nothing to record."""

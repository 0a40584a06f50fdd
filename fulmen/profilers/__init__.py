"""Profilers: where a run spends its time, by action (each hook, the steps, fetching batches, whole batches and
epochs), with Lightning's action names and reports.

    Trainer(profiler="simple")     SimpleProfiler: a table of mean and total time per action
    Trainer(profiler="advanced")   AdvancedProfiler: cProfile statistics per action
    Trainer(profiler="pytorch")    PyTorchProfiler: torch.profiler operator table and a Chrome trace

The Trainer instruments a run only when a profiler is given: the hooks, the step function and the batch iterator are
wrapped when the run starts. Without one nothing is wrapped, so profiling costs nothing when it is off.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Callable

from fulmen.profilers.advanced import AdvancedProfiler
from fulmen.profilers.base import PassThroughProfiler
from fulmen.profilers.profiler import Profiler
from fulmen.profilers.pytorch import PyTorchProfiler
from fulmen.profilers.simple import SimpleProfiler
from fulmen.profilers.xla import XLAProfiler

__all__ = ["AdvancedProfiler", "PassThroughProfiler", "Profiler", "PyTorchProfiler", "SimpleProfiler", "XLAProfiler"]


def resolve(profiler: Any) -> Profiler:
    """``Trainer(profiler=...)``: None, "simple", "advanced", "pytorch" or a Profiler."""
    if profiler is None:
        return PassThroughProfiler()
    if isinstance(profiler, Profiler):
        return profiler
    choices = {"simple": SimpleProfiler, "advanced": AdvancedProfiler, "pytorch": PyTorchProfiler}
    if isinstance(profiler, str):
        if profiler.lower() not in choices:
            raise ValueError(f"Trainer(profiler={profiler!r}) is not supported; choose one of {sorted(choices)}, a "
                             "fulmen.profilers.Profiler instance, or None")
        return choices[profiler.lower()]()
    raise TypeError(f"Trainer(profiler=...) got {profiler!r} of type {type(profiler).__name__}; pass None, "
                    f"{', '.join(repr(c) for c in sorted(choices))} or a fulmen.profilers.Profiler instance")


# ---------------------------------------------------------------------------------------------- instrumenting a run
def profiled(profiler: Profiler, action: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn``, timed as ``action`` on each call."""

    def call(*args: Any, **kwargs: Any) -> Any:
        with profiler.profile(action):
            return fn(*args, **kwargs)

    return call


def profiled_batches(profiler: Profiler, action: str, batches: Iterator[Any]) -> Iterator[Any]:
    """``batches`` (``(batch_idx, batch, is_last)`` items), with each fetch timed as ``action``; none is asked for
    after the last one."""
    while True:
        profiler.start(action)
        try:
            item = next(batches)
        except StopIteration:
            return
        finally:
            profiler.stop(action)
        yield item
        if item[2]:
            return

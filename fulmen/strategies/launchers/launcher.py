"""The interface of a launcher: what starts (or joins) the processes of a multi-process run."""

from __future__ import annotations

import signal
from abc import ABC, abstractmethod
from typing import Any, Callable, Optional


class _Launcher(ABC):
    """Starts the processes of a run and runs ``function`` in them (``launch``); ends them after a failure
    (``kill``) and says which one died first (``dead_rank``). ``procs`` holds the processes this one started."""

    procs: list[Any]

    @property
    @abstractmethod
    def is_interactive_compatible(self) -> bool:
        """Whether it works in a notebook or another interactive interpreter (no script to run again)."""

    @abstractmethod
    def launch(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``function(*args, **kwargs)`` on every process of the run; returns what rank zero returned."""

    @abstractmethod
    def dead_rank(self) -> Optional[str]:
        """The first started process found dead ("rank 2 (exit code -9)"), or None."""

    @abstractmethod
    def kill(self, signum: int = signal.SIGTERM) -> None:
        """Send ``signum`` to the started processes, and wait for them."""

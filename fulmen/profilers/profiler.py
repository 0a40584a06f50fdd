"""The Profiler base class: ``start``/``stop`` an action, ``summary()``, and where the report is written."""

from __future__ import annotations

import logging
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional, TextIO, Union

log = logging.getLogger("fulmen")


class Profiler(ABC):
    """Base class: ``start(action)`` / ``stop(action)`` (or ``with profiler.profile(action)``), and ``summary()``.

    With ``dirpath`` and ``filename`` the report goes to ``dirpath/<stage>-<filename>.txt`` (``dirpath`` defaults
    to the Trainer's ``log_dir``); without ``filename`` it is printed (logged at INFO).
    """

    def __init__(self, dirpath: Optional[Union[str, Path]] = None, filename: Optional[str] = None) -> None:
        self.dirpath = dirpath
        self.filename = filename
        self._output_file: Optional[TextIO] = None
        self._local_rank: Optional[int] = None
        self._stage: Optional[str] = None

    @abstractmethod
    def start(self, action_name: str) -> None:
        """Begin timing ``action_name``."""

    @abstractmethod
    def stop(self, action_name: str) -> None:
        """End timing ``action_name``."""

    def summary(self) -> str:
        """The report, as text."""
        return ""

    @contextmanager
    def profile(self, action_name: str) -> Generator[str, None, None]:
        """Time the ``with`` block as ``action_name``."""
        try:
            self.start(action_name)
            yield action_name
        finally:
            self.stop(action_name)

    def setup(self, stage: str, local_rank: Optional[int] = None, log_dir: Optional[str] = None) -> None:
        """Called by the Trainer when a run starts."""
        self._stage = stage
        self._local_rank = local_rank
        self.dirpath = self.dirpath or log_dir

    def describe(self) -> None:
        """Write the report (to the file, or the log) and close the file. Called when a run ends."""
        text = self.summary()
        if text:
            if self.filename and self.dirpath:
                os.makedirs(self.dirpath, exist_ok=True)
                with open(os.path.join(self.dirpath, self._prepare_filename()), "a") as f:
                    f.write(text)
            elif self._local_rank in (None, 0):
                log.info(text)
        self.teardown(self._stage)

    def teardown(self, stage: Optional[str]) -> None:
        """Release what the profiler holds (files, profiling sessions)."""

    def _prepare_filename(self, action_name: Optional[str] = None, extension: str = ".txt") -> str:
        parts = [p for p in (self._stage, self.filename, None if self._local_rank is None else str(self._local_rank),
                             action_name) if p]
        base = re.sub(r"_+", "_", re.sub(r"[\\/:*?\"<>|\n\r\t]", "_", "-".join(parts))).strip()
        return (base or "profile") + extension

    @property
    def local_rank(self) -> int:
        return 0 if self._local_rank is None else self._local_rank


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "|  " + "  |  ".join(c.ljust(w) for c, w in zip(cells, widths)) + "  |"

    rule = "-" * len(line(header))
    return os.linesep.join([rule, line(header), rule, line(rows[0]), rule] + [line(r) for r in rows[1:]] + [rule, ""])

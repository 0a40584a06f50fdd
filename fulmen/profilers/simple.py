"""SimpleProfiler: mean and total time per action, as a table."""

from __future__ import annotations

import math
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Optional, Union
from typing_extensions import override

from fulmen.profilers.profiler import Profiler, _table


class SimpleProfiler(Profiler):
    """The duration of each action: a table of mean time, calls, total time and share of the run.

    ``extended=False`` keeps only the mean and total columns.
    """

    def __init__(self, dirpath: Optional[Union[str, Path]] = None, filename: Optional[str] = None,
                 extended: bool = True) -> None:
        super().__init__(dirpath, filename)
        self.current_actions: dict[str, float] = {}
        self.recorded_durations: dict[str, list[float]] = defaultdict(list)
        self.extended = extended
        self.start_time = time.perf_counter()

    @override
    def start(self, action_name: str) -> None:
        if action_name in self.current_actions:
            raise ValueError(f"SimpleProfiler: action {action_name!r} was started twice without a stop")
        self.current_actions[action_name] = time.perf_counter()

    @override
    def stop(self, action_name: str) -> None:
        end = time.perf_counter()
        begin = self.current_actions.pop(action_name, None)
        if begin is None:
            raise ValueError(f"SimpleProfiler: action {action_name!r} was stopped but never started")
        self.recorded_durations[action_name].append(end - begin)

    @override
    def summary(self) -> str:
        if not self.recorded_durations:
            return ""
        total_run = time.perf_counter() - self.start_time
        rows = []
        for action, durations in self.recorded_durations.items():
            total = math.fsum(durations)
            rows.append((action, total / len(durations), len(durations), total, 100.0 * total / total_run))
        title = f"{self._stage.upper()} " if self._stage else ""
        if self.extended:
            rows.sort(key=lambda r: r[4], reverse=True)
            header = ["Action", "Mean duration (s)", "Num calls", "Total time (s)", "Percentage %"]
            body = [["Total", "-", str(sum(r[2] for r in rows)), f"{total_run:.5}", "100 %"]]
            body += [[a, f"{m:.5}", str(n), f"{t:.5}", f"{p:.5}"] for a, m, n, t, p in rows]
        else:
            rows.sort(key=lambda r: r[1], reverse=True)
            header = ["Action", "Mean duration (s)", "Total time (s)"]
            body = [[a, f"{m:.5}", f"{t:.5}"] for a, m, _, t, _ in rows]
        return f"{title}Profiler Report{os.linesep}{_table(header, body)}"

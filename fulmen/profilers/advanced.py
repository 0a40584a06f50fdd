"""AdvancedProfiler: cProfile statistics per action."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Optional, Union
from typing_extensions import override

from fulmen.profilers.profiler import Profiler


class AdvancedProfiler(Profiler):
    """cProfile statistics for each action (the functions it called, by cumulative time).

    ``line_count_restriction``: how many lines of each action's statistics to show (an int, or a fraction).
    ``dump_stats``: also write each action's raw statistics to ``dirpath`` (for snakeviz or pstats).
    """

    def __init__(self, dirpath: Optional[Union[str, Path]] = None, filename: Optional[str] = None,
                 line_count_restriction: float = 1.0, dump_stats: bool = False) -> None:
        super().__init__(dirpath, filename)
        self.profiled_actions: dict[str, Any] = {}  # action -> cProfile.Profile
        self.line_count_restriction = line_count_restriction
        self.dump_stats = dump_stats

    @override
    def start(self, action_name: str) -> None:
        import cProfile

        # One cProfile session per action name, enabled around each occurrence.
        profile = self.profiled_actions.get(action_name)
        if profile is None:
            profile = self.profiled_actions[action_name] = cProfile.Profile()
        profile.enable()

    @override
    def stop(self, action_name: str) -> None:
        profile = self.profiled_actions.get(action_name)
        if profile is None:
            raise ValueError(f"AdvancedProfiler: action {action_name!r} was stopped but never started")
        profile.disable()

    @override
    def summary(self) -> str:
        import pstats

        parts = []
        for action, profile in self.profiled_actions.items():
            if self.dump_stats and self.dirpath:
                os.makedirs(self.dirpath, exist_ok=True)
                profile.dump_stats(os.path.join(self.dirpath, self._prepare_filename(action, ".prof")))
            stream = io.StringIO()
            pstats.Stats(profile, stream=stream).strip_dirs().sort_stats("cumulative").print_stats(
                self.line_count_restriction)
            rank = f" rank: {self._local_rank}" if self._local_rank is not None else ""
            parts += [f"Profile stats for: {action}{rank}", stream.getvalue()]
        if not parts:
            return ""
        title = f"{self._stage.upper()} " if self._stage else ""
        return os.linesep.join([f"{title}Profiler Report"] + parts)

    @override
    def teardown(self, stage: Optional[str]) -> None:
        self.profiled_actions = {}

"""Profilers: where a run spends its time, by action (each hook, the steps, fetching batches, whole batches and
epochs), with Lightning's action names and reports.

    Trainer(profiler="simple")     SimpleProfiler: a table of mean and total time per action
    Trainer(profiler="advanced")   AdvancedProfiler: cProfile statistics per action
    Trainer(profiler="pytorch")    PyTorchProfiler: torch.profiler operator table and a Chrome trace

The Trainer instruments a run only when a profiler is given: the hooks, the step function and the batch iterator are
wrapped when the run starts. Without one nothing is wrapped, so profiling costs nothing when it is off.
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
import time
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Optional, TextIO, Union

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


class PassThroughProfiler(Profiler):
    """Records nothing (``Trainer(profiler=None)``)."""

    def start(self, action_name: str) -> None:
        """Nothing to record."""

    def stop(self, action_name: str) -> None:
        """Nothing to record."""


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

    def start(self, action_name: str) -> None:
        if action_name in self.current_actions:
            raise ValueError(f"SimpleProfiler: action {action_name!r} was started twice without a stop")
        self.current_actions[action_name] = time.perf_counter()

    def stop(self, action_name: str) -> None:
        end = time.perf_counter()
        begin = self.current_actions.pop(action_name, None)
        if begin is None:
            raise ValueError(f"SimpleProfiler: action {action_name!r} was stopped but never started")
        self.recorded_durations[action_name].append(end - begin)

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

    def start(self, action_name: str) -> None:
        import cProfile

        # One cProfile session per action name, enabled around each occurrence.
        profile = self.profiled_actions.get(action_name)
        if profile is None:
            profile = self.profiled_actions[action_name] = cProfile.Profile()
        profile.enable()

    def stop(self, action_name: str) -> None:
        profile = self.profiled_actions.get(action_name)
        if profile is None:
            raise ValueError(f"AdvancedProfiler: action {action_name!r} was stopped but never started")
        profile.disable()

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

    def teardown(self, stage: Optional[str]) -> None:
        self.profiled_actions = {}


# With a schedule, the profiler steps when one of these actions ends: a whole training batch, an eval step. No
# range may be open across a profiler step (torch crashes freeing events that span two recording sessions), so the
# training epoch, which holds the batches, gets no range then.
_STEP_ACTIONS = ("run_training_batch", "validation_step", "test_step", "predict_step")
_SPANS_STEPS = ("run_training_epoch",)


class PyTorchProfiler(Profiler):
    """``torch.profiler`` over the run: operator times (a table sorted by ``sort_by_key``) and, with
    ``export_to_chrome``, a Chrome trace (``<dirpath>/<stage>-<filename>.pt.trace.json``, open it in
    chrome://tracing or Perfetto). Each action is a ``record_function`` range in the trace.

    Args:
        group_by_input_shapes: group operators by input shapes in the table (records shapes).
        export_to_chrome: write the trace file.
        row_limit: rows in the table (-1 for all).
        sort_by_key: the table's sort column (default "cuda_time_total" with CUDA, else "cpu_time_total").
        record_module_names: also record a range per ``nn.Module`` forward, named after the module.
        **profiler_kwargs: passed to ``torch.profiler.profile`` (``profile_memory``, ``with_stack``, ...). With a
            ``schedule``, every training batch and validation/test/predict step is one profiler step (the training
            epoch then has no range of its own); with
            ``on_trace_ready=torch.profiler.tensorboard_trace_handler(dir)`` the traces go to TensorBoard's
            profiler plugin.
    """

    def __init__(self, dirpath: Optional[Union[str, Path]] = None, filename: Optional[str] = None,
                 group_by_input_shapes: bool = False, emit_nvtx: bool = False, export_to_chrome: bool = True,
                 row_limit: int = 20, sort_by_key: Optional[str] = None, record_module_names: bool = True,
                 table_kwargs: Optional[dict[str, Any]] = None, **profiler_kwargs: Any) -> None:
        super().__init__(dirpath, filename)
        if emit_nvtx:
            raise ValueError("PyTorchProfiler(emit_nvtx=True) is not supported; run under nsys with the default "
                             "profiler instead")
        self.group_by_input_shapes = group_by_input_shapes
        self.export_to_chrome = export_to_chrome
        self.row_limit = row_limit
        self.sort_by_key = sort_by_key
        self.record_module_names = record_module_names
        self.table_kwargs = table_kwargs or {}
        schedule = profiler_kwargs.get("schedule")
        if schedule is not None and not callable(schedule):
            raise ValueError(f"PyTorchProfiler(schedule={schedule!r}) must be callable, such as "
                             "torch.profiler.schedule(wait=1, warmup=1, active=3)")
        self.profiler_kwargs = profiler_kwargs
        self._stepped = schedule is not None
        self.profiler: Any = None
        self._ranges: dict[str, Any] = {}
        self._hooks: list[Any] = []

    def start(self, action_name: str) -> None:
        import torch

        if self.profiler is None:
            activities = [torch.profiler.ProfilerActivity.CPU]
            if torch.cuda.is_available():
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            kwargs = {"activities": activities, "record_shapes": self.group_by_input_shapes, **self.profiler_kwargs}
            self.profiler = torch.profiler.profile(**kwargs)
            self.profiler.__enter__()
        if self._stepped and action_name in _SPANS_STEPS:
            return
        record = torch.autograd.profiler.record_function(action_name)
        record.__enter__()
        self._ranges[action_name] = record

    def stop(self, action_name: str) -> None:
        record = self._ranges.pop(action_name, None)
        if record is not None:
            record.__exit__(None, None, None)
        # With a schedule, each step ends one profiler step (wait, warmup, active cycles count steps).
        if self._stepped and action_name.endswith(_STEP_ACTIONS) and not self._ranges:
            self.profiler.step()

    def watch_modules(self, model: Any) -> None:
        """Name each submodule's forward in the trace (``record_module_names``)."""
        if not self.record_module_names:
            return
        import torch

        for name, module in model.named_modules():
            if not name:
                continue
            label = f"[pl][module]{type(module).__module__}.{type(module).__name__}: {name}"

            def enter(mod: Any, args: Any, label: str = label) -> None:
                record = torch.autograd.profiler.record_function(label)
                record.__enter__()
                mod._fulmen_record = record

            def leave(mod: Any, args: Any, output: Any) -> None:
                record = mod.__dict__.pop("_fulmen_record", None)
                if record is not None:
                    record.__exit__(None, None, None)

            self._hooks += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]

    def summary(self) -> str:
        if self.profiler is None:
            return ""
        import torch

        for name in list(self._ranges):
            self.stop(name)
        self.profiler.__exit__(None, None, None)
        if self.export_to_chrome and self.dirpath:
            os.makedirs(self.dirpath, exist_ok=True)
            self.profiler.export_chrome_trace(os.path.join(
                self.dirpath, self._prepare_filename(extension=".pt.trace.json")))
        sort = self.sort_by_key or ("cuda_time_total" if torch.cuda.is_available() else "cpu_time_total")
        table = self.profiler.key_averages(group_by_input_shape=self.group_by_input_shapes).table(
            sort_by=sort, row_limit=self.row_limit, **self.table_kwargs)
        title = f"{self._stage.upper()} " if self._stage else ""
        return f"{title}Profiler Report{os.linesep}{table}"

    def teardown(self, stage: Optional[str]) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks = []
        if self.profiler is not None:
            # Free the recorded events now. torch.profiler.profile sits in a reference cycle, so left alone it is
            # freed by the garbage collector at some later moment, and freeing its events after another profiler
            # session has started crashes the process (a use-after-free in torch).
            self.profiler.profiler = None
        self.profiler = None
        self._ranges = {}


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "|  " + "  |  ".join(c.ljust(w) for c, w in zip(cells, widths)) + "  |"

    rule = "-" * len(line(header))
    return os.linesep.join([rule, line(header), rule, line(rows[0]), rule] + [line(r) for r in rows[1:]] + [rule, ""])


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

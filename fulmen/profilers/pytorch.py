"""PyTorchProfiler: torch.profiler's operator table and a Chrome trace, per stage."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Union
from typing_extensions import override

from fulmen.profilers.profiler import Profiler

# With a schedule, the profiler steps when one of these actions ends: a whole training batch, an eval step. No
# range may be open across a profiler step (torch crashes freeing events that span two recording sessions), so the
# training epoch, which holds the batches, gets no range then.
_STEP_ACTIONS = ("run_training_batch", "validation_step", "test_step", "predict_step")
_SPANS_STEPS = ("run_training_epoch",)


class RegisterRecordFunction:
    """While active (``with RegisterRecordFunction(model):``), each submodule's forward is a ``record_function``
    range of the trace, named ``[pl][module]<module>.<Class>: <name>``."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self._handles: list[Any] = []
        self._records: dict[int, Any] = {}

    def _start_recording_forward(self, module: Any, args: Any, record_name: str) -> None:
        import torch

        record = torch.autograd.profiler.record_function(record_name)
        record.__enter__()
        self._records[id(module)] = record

    def _stop_recording_forward(self, module: Any, args: Any, output: Any) -> None:
        record = self._records.pop(id(module), None)
        if record is not None:
            record.__exit__(None, None, None)

    def __enter__(self) -> "RegisterRecordFunction":
        import functools

        for name, module in self._model.named_modules():
            if not name:
                continue
            label = f"[pl][module]{type(module).__module__}.{type(module).__name__}: {name}"
            start = functools.partial(self._start_recording_forward, record_name=label)
            self._handles += [module.register_forward_pre_hook(start),
                              module.register_forward_hook(self._stop_recording_forward)]
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


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
        self._recorder: Optional[RegisterRecordFunction] = None

    @override
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

    @override
    def stop(self, action_name: str) -> None:
        record = self._ranges.pop(action_name, None)
        if record is not None:
            record.__exit__(None, None, None)
        # With a schedule, each step ends one profiler step (wait, warmup, active cycles count steps).
        if self._stepped and action_name.endswith(_STEP_ACTIONS) and not self._ranges:
            self.profiler.step()

    def watch_modules(self, model: Any) -> None:
        """Name each submodule's forward in the trace (``record_module_names``)."""
        if self.record_module_names:
            self._recorder = RegisterRecordFunction(model)
            self._recorder.__enter__()

    @override
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

    @override
    def teardown(self, stage: Optional[str]) -> None:
        if self._recorder is not None:
            self._recorder.__exit__(None, None, None)
            self._recorder = None
        if self.profiler is not None:
            # Free the recorded events now. torch.profiler.profile sits in a reference cycle, so left alone it is
            # freed by the garbage collector at some later moment, and freeing its events after another profiler
            # session has started crashes the process (a use-after-free in torch).
            self.profiler.profiler = None
        self.profiler = None
        self._ranges = {}

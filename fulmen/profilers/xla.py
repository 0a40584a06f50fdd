"""XLAProfiler: traces for TensorBoard's profiler plugin on XLA devices (TPUs), through torch_xla's profiler
server."""

from __future__ import annotations

from typing import Any
from typing_extensions import override

from fulmen.profilers.profiler import Profiler

# Actions that end a step: torch_xla numbers them, so the trace viewer shows one row per step.
_STEP_ACTIONS = ("run_training_batch", "validation_step", "test_step", "predict_step")


class XLAProfiler(Profiler):
    """Start torch_xla's profiler server on ``port`` and mark each action as a trace range (steps as numbered step
    ranges). Capture with TensorBoard's profiler plugin (or ``torch_xla.debug.profiler.trace``) pointed at
    ``localhost:<port>`` while the run goes on; this profiler writes no report of its own."""

    def __init__(self, port: int = 9012, **profiler_kwargs: Any) -> None:
        try:
            import torch_xla.debug.profiler  # noqa: F401
        except ImportError as err:
            raise ModuleNotFoundError("XLAProfiler traces XLA devices through torch_xla, which is not installed: "
                                      "install the torch_xla release that matches your torch") from err
        super().__init__(dirpath=None, filename=None)
        self.port = port
        self._server: Any = None
        self._open: dict[str, Any] = {}
        self._steps: dict[str, int] = {}

    @override
    def start(self, action_name: str) -> None:
        import torch_xla.debug.profiler as xp

        if self._server is None:
            self._server = xp.start_server(self.port)
        if action_name.endswith(_STEP_ACTIONS):
            step = self._steps.get(action_name, 0)
            self._steps[action_name] = step + 1
            trace = xp.StepTrace(action_name, step_num=step)
        else:
            trace = xp.Trace(action_name)
        trace.__enter__()
        self._open[action_name] = trace

    @override
    def stop(self, action_name: str) -> None:
        trace = self._open.pop(action_name, None)
        if trace is not None:
            trace.__exit__(None, None, None)

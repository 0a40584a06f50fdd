"""torchmetrics objects without importing torchmetrics: which values are Metrics, and the accumulated state of a
module's Metrics (what ``Metric.state_dict`` leaves out by default and ``compute`` reads), saved and put back so that
a resumed run's epoch values are exact."""

from __future__ import annotations

import sys
from typing import Any


def is_metric(value: Any) -> bool:
    """Whether ``value`` is a torchmetrics Metric, without importing torchmetrics (if it is not loaded, it is not)."""
    tm = sys.modules.get("torchmetrics")
    return tm is not None and isinstance(value, tm.Metric)


def submodule(module: Any, name: str) -> Any:
    """``module``'s submodule at the dotted path ``name``, or None (no module, or no such attribute)."""
    try:
        return module.get_submodule(name) if module is not None else None
    except AttributeError:
        return None


def metric_states(module: Any) -> dict[str, dict[str, Any]]:
    """The accumulated state of every torchmetrics Metric in ``module`` (by attribute path), as tensors and
    numbers: what ``Metric.state_dict`` leaves out by default, and what its ``compute`` reads."""
    if sys.modules.get("torchmetrics") is None or module is None:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for name, metric in module.named_modules():
        if name and is_metric(metric):
            state = {key: [t.detach().clone() for t in value] if isinstance(value, list) else value.detach().clone()
                     for key, value in metric.metric_state.items()}
            out[name] = {"state": state, "update_count": int(metric._update_count)}
    return out


def load_metric_states(module: Any, saved: dict[str, dict[str, Any]]) -> None:
    """Put back what ``metric_states`` saved, on each Metric's device; Metrics the module no longer has are
    skipped."""
    for name, item in saved.items():
        metric = submodule(module, name)
        if not is_metric(metric):
            continue
        device = metric.device
        for key, value in item["state"].items():
            if key in metric._defaults:
                setattr(metric, key, [t.to(device) for t in value] if isinstance(value, list) else value.to(device))
        metric._update_count = int(item["update_count"])
        metric._computed = None  # the cached value of compute() belonged to the state before

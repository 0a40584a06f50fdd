"""ModelSummary: a plain-text table of the model's layers and parameter counts at the start of fit."""

from __future__ import annotations

from typing import Any

import torch

from fulmen.callbacks.callback import Callback
from fulmen.utilities.rank_zero import rank_zero_info


def summarize(module: torch.nn.Module, max_depth: int = 1) -> str:
    """The summary table: name, type, parameters and mode of each submodule down to ``max_depth``, then totals."""
    rows = []
    for name, sub in module.named_modules():
        depth = name.count(".") + 1 if name else 0
        if not name or (max_depth != -1 and depth > max_depth):
            continue
        params = sum(p.numel() for p in sub.parameters())
        rows.append((name, type(sub).__name__, _human(params), "train" if sub.training else "eval"))
    header = ("", "Name", "Type", "Params", "Mode")
    table = [header] + [(str(i), *row) for i, row in enumerate(rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in table]
    rule = "-" * max(len(line) for line in lines)
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    total = sum(p.numel() for p in module.parameters())
    size_mb = sum(p.numel() * p.element_size() for p in module.parameters()) / 1e6
    in_train = sum(1 for m in module.modules() if m.training)
    in_eval = sum(1 for m in module.modules() if not m.training)
    footer = [
        f"{_human(trainable):<10} Trainable params",
        f"{_human(total - trainable):<10} Non-trainable params",
        f"{_human(total):<10} Total params",
        f"{size_mb:<10.3f} Total estimated model params size (MB)",
        f"{in_train:<10} Modules in train mode",
        f"{in_eval:<10} Modules in eval mode",
    ]
    return "\n".join([lines[0], rule, *lines[1:], rule, *footer])


def _human(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return str(n)


class ModelSummary(Callback):
    """Log the model summary (``max_depth`` levels of submodules; -1 for all) when fit starts."""

    def __init__(self, max_depth: int = 1, **summarize_kwargs: Any) -> None:
        self._max_depth = max_depth

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        if self._max_depth == 0 or not trainer.is_global_zero:
            return
        rank_zero_info("\n" + summarize(pl_module, self._max_depth))

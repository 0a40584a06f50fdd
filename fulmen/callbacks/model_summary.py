"""ModelSummary: the table of the model's layers, logged when fit starts (``fulmen.utilities.model_summary.model_summary``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from typing_extensions import override

from fulmen.callbacks.callback import Callback
from fulmen.utilities.model_summary.model_summary import ModelSummary as Summary
from fulmen.utilities.model_summary.model_summary import summarize
from fulmen.utilities.rank_zero import rank_zero_info

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer

__all__ = ["ModelSummary", "summarize"]


class ModelSummary(Callback):
    """Log the model summary when fit starts: ``max_depth`` levels of submodules (-1 for all, 0 for none), with
    FLOPs and layer sizes when the module sets ``example_input_array``."""

    def __init__(self, max_depth: int = 1, **summarize_kwargs: Any) -> None:
        self._max_depth = max_depth
        self._summarize_kwargs = summarize_kwargs

    @override
    def on_fit_start(self, trainer: "Trainer", pl_module: Any) -> None:
        if self._max_depth == 0 or not trainer.is_global_zero:
            return
        rank_zero_info("\n" + str(Summary(pl_module, self._max_depth)))

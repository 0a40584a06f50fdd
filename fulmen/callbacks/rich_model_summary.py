"""RichModelSummary: the model summary as a rich table (an optional extra: ``pip install 'fulmen[rich]'``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from typing_extensions import override

from fulmen.callbacks.model_summary import ModelSummary
from fulmen.callbacks.progress.rich_progress import require_rich
from fulmen.utilities.model_summary.model_summary import ModelSummary as Summary

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer

_RIGHT = {"Params", "FLOPs", "In sizes", "Out sizes"}


class RichModelSummary(ModelSummary):
    """``ModelSummary``'s table and totals, printed with rich when fit starts (the default summary when the progress
    bar is a RichProgressBar). ``header_style`` (a summarize keyword) styles the header, "bold magenta" by default.
    """

    def __init__(self, max_depth: int = 1, **summarize_kwargs: Any) -> None:
        require_rich("RichModelSummary")
        super().__init__(max_depth, **summarize_kwargs)

    @override
    def on_fit_start(self, trainer: "Trainer", pl_module: Any) -> None:
        if self._max_depth == 0 or not trainer.is_global_zero:
            return
        from rich import get_console
        from rich.table import Table

        summary = Summary(pl_module, self._max_depth)
        table = Table(header_style=self._summarize_kwargs.get("header_style", "bold magenta"))
        columns = summary.columns()
        for header, _ in columns:
            table.add_column(header, justify="right" if header in _RIGHT else "left", style="dim" if header == " "
                             else None, no_wrap=header == "Name")
        for row in zip(*(cells for _, cells in columns)):
            table.add_row(*row)
        console = get_console()
        console.print(table)
        grid = Table.grid(expand=True)
        grid.add_column()
        for value, label in summary.totals():
            grid.add_row(f"[bold]{label}[/]: {value}")
        console.print(grid)

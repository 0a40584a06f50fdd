"""RichProgressBar: progress bars drawn with rich (an optional extra: ``pip install 'fulmen[rich]'``)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Optional, Union
from typing_extensions import override

from fulmen.callbacks.progress.progress_bar import ProgressBar

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer


def require_rich(what: str) -> None:
    """Raise a ModuleNotFoundError naming the extra when rich is not installed."""
    try:
        import rich  # noqa: F401
    except ImportError as err:
        raise ModuleNotFoundError(f"{what} draws with rich, which is not installed: pip install 'fulmen[rich]' "
                                  "(or pip install rich)") from err


@dataclass
class RichProgressBarTheme:
    """The styles of the bar's parts (rich style strings, such as "bold", "dim underline" or "#6206E0")."""

    description: str = ""
    progress_bar: str = "#6206E0"
    progress_bar_finished: str = "#6206E0"
    progress_bar_pulse: str = "#6206E0"
    batch_progress: str = ""
    time: str = "dim"
    processing_speed: str = "dim underline"
    metrics: str = "italic"
    metrics_text_delimiter: str = " "
    metrics_format: str = ".3f"


class RichProgressBar(ProgressBar):
    """Bars for training (with the progress-bar metrics beside it), validation, test and predict, drawn by rich.

    Each bar shows its description, the bar, ``done/total`` batches, ``elapsed • remaining`` and the speed. A new
    bar starts for each evaluation loader; the validation bar disappears when validation ends.

    Args:
        refresh_rate: redraws per second (0 turns the bars off).
        leave: keep each finished epoch's bar on screen.
        theme: the styles (``RichProgressBarTheme``).
        console_kwargs: passed to ``rich.console.Console`` (``file``, ``width``, ``force_terminal``...).
        metrics_interval: seconds between reads of the logged values (a read waits for the device, so it is
            never done on every batch; Lightning reads them after every batch).
    """

    def __init__(self, refresh_rate: int = 100, leave: bool = False,
                 theme: RichProgressBarTheme = RichProgressBarTheme(),
                 console_kwargs: Optional[dict[str, Any]] = None, metrics_interval: float = 0.5) -> None:
        require_rich("RichProgressBar")
        super().__init__()
        if isinstance(refresh_rate, bool) or not isinstance(refresh_rate, int) or refresh_rate < 0:
            raise ValueError(f"RichProgressBar(refresh_rate={refresh_rate!r}) must be an int >= 0 (redraws per "
                             "second; 0 turns the bars off)")
        self._refresh_rate = refresh_rate
        self._leave = leave
        self.theme = theme
        self._console_kwargs = console_kwargs or {}
        self.metrics_interval = metrics_interval
        self.progress: Any = None  # rich.progress.Progress while bars are on screen
        self.train_progress_bar_id: Any = None
        self.val_sanity_progress_bar_id: Any = None
        self.val_progress_bar_id: Any = None
        self.test_progress_bar_id: Any = None
        self.predict_progress_bar_id: Any = None
        self._loader_idx: Optional[int] = None
        self._totals: dict[Any, Union[int, float]] = {}  # task id -> its number of batches
        self._last_metrics = float("-inf")
        self._lines = False  # printing whole lines instead of live bars (set when the display starts)

    @property
    def refresh_rate(self) -> int:
        return self._refresh_rate

    @property
    @override
    def is_enabled(self) -> bool:
        return self._enabled and self._refresh_rate > 0

    @property
    def is_disabled(self) -> bool:
        return not self.is_enabled

    # ------------------------------------------------------------------------------------------ the display
    def _start(self) -> None:
        if self.progress is not None or self.is_disabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn
        from rich.text import Text

        theme = self.theme
        console = Console(**self._console_kwargs)
        # Not a terminal (a log file, a pipe): no live frames, which a file keeps as a wrapped jumble; one whole
        # line per bar when its stage ends, as TQDMProgressBar's plain lines.
        self._lines = not console.is_terminal
        if self._lines and "width" not in self._console_kwargs:
            console = Console(**{**self._console_kwargs, "width": 400})

        class Counts(ProgressColumn):
            def render(self, task: Any) -> Text:
                total = "--" if task.total is None else int(task.total)
                return Text(f"{int(task.completed)}/{total}", style=theme.batch_progress)

        class Times(ProgressColumn):
            max_refresh = 0.5  # a clock that ticks twice a second does not flicker

            def render(self, task: Any) -> Text:
                elapsed = task.finished_time if task.finished else task.elapsed
                remaining = task.time_remaining
                shown = ["-:--:--" if t is None else str(timedelta(seconds=int(t))) for t in (elapsed, remaining)]
                return Text(" • ".join(shown), style=theme.time)

        class Speed(ProgressColumn):
            def render(self, task: Any) -> Text:
                return Text(f"{task.speed or 0.0:.2f}it/s", style=theme.processing_speed)

        self.progress = Progress(
            TextColumn("[progress.description]{task.description}", style=theme.description),
            BarColumn(complete_style=theme.progress_bar, finished_style=theme.progress_bar_finished,
                      pulse_style=theme.progress_bar_pulse),
            Counts(), Times(), Speed(), TextColumn("{task.fields[metrics]}", style=theme.metrics),
            console=console, auto_refresh=not self._lines, transient=self._lines,
            refresh_per_second=self._refresh_rate)
        self.progress.start()

    def _stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
            self.train_progress_bar_id = self.val_sanity_progress_bar_id = self.val_progress_bar_id = None
            self.test_progress_bar_id = self.predict_progress_bar_id = None
            self._totals = {}

    @override
    def print(self, *args: Any, **kwargs: Any) -> None:
        """Print above the live bars (through rich's console), so that they stay whole."""
        if self.progress is None:
            print(*args, **kwargs)
            return
        sep, end = kwargs.get("sep", " "), kwargs.get("end", "\n")
        self.progress.console.print(sep.join(map(str, args)), end=end, markup=False, highlight=False)

    def _add(self, description: str, total: Union[int, float], visible: bool = True) -> Any:
        self._start()
        styled = f"[{self.theme.description}]{description}" if self.theme.description else description
        task = self.progress.add_task(styled, total=None if total == float("inf") else total, visible=visible,
                                      metrics="")
        self._totals[task] = total
        return task

    def _print_line(self, task: Any) -> None:
        """Without a terminal: bar ``task`` as one line of text (its description, counts, times, speed, metrics)."""
        if not self._lines or self.progress is None or task is None:
            return
        found = [t for t in self.progress.tasks if t.id == task and t.visible]
        if found:
            self.progress.console.print(self.progress.make_tasks_table(found))

    def _hide(self, task: Any) -> None:
        if self.progress is not None and task is not None:
            self.progress.update(task, visible=False)

    def _advance(self, task: Any, completed: int) -> None:
        if self.progress is not None and task is not None:
            self.progress.update(task, completed=completed)
            if completed == self._totals.get(task):
                self.progress.refresh()  # a finished bar is drawn full, even between the clock's redraws

    def _show_metrics(self, trainer: "Trainer", pl_module: Any, force: bool = False) -> None:
        now = time.monotonic()
        if self.progress is None or self.train_progress_bar_id is None or (
                not force and now - self._last_metrics < self.metrics_interval):
            return
        self._last_metrics = now
        texts = []
        for name, value in self.get_metrics(trainer, pl_module).items():
            if isinstance(value, float):
                value = f"{value:{self.theme.metrics_format}}"
            texts.append(f"{name}: {value}")
        self.progress.update(self.train_progress_bar_id, metrics=self.theme.metrics_text_delimiter.join(texts))

    def _new_loader(self, dataloader_idx: int) -> bool:
        changed = dataloader_idx != self._loader_idx
        self._loader_idx = dataloader_idx
        return changed

    # ------------------------------------------------------------------------------------------ training
    @override
    def on_train_epoch_start(self, trainer: "Trainer", pl_module: Any) -> None:
        if self.is_disabled:
            return
        description = f"Epoch {trainer.current_epoch}"
        if trainer.max_epochs not in (None, -1):
            description += f"/{trainer.max_epochs - 1}"
        total = trainer.num_training_batches
        if self.train_progress_bar_id is not None and self._leave:
            self._stop()  # the finished epoch's bar stays printed above the next one
        if self.train_progress_bar_id is None:
            self.train_progress_bar_id = self._add(description, total)
        else:
            self.progress.reset(self.train_progress_bar_id, total=None if total == float("inf") else total,
                                description=description, visible=True)
            self._totals[self.train_progress_bar_id] = total

    @override
    def on_train_batch_end(self, trainer: "Trainer", pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._advance(self.train_progress_bar_id, batch_idx + 1)
        self._show_metrics(trainer, pl_module)

    @override
    def on_train_epoch_end(self, trainer: "Trainer", pl_module: Any) -> None:
        self._show_metrics(trainer, pl_module, force=True)
        self._print_line(self.train_progress_bar_id)

    # ------------------------------------------------------------------------------------------ evaluation
    @override
    def on_sanity_check_end(self, trainer: "Trainer", pl_module: Any) -> None:
        self._print_line(self.val_sanity_progress_bar_id)
        self._hide(self.val_sanity_progress_bar_id)

    @override
    def on_validation_start(self, trainer: "Trainer", pl_module: Any) -> None:
        self._loader_idx = None

    @override
    def on_validation_batch_start(self, trainer: "Trainer", pl_module: Any, batch: Any, batch_idx: int,
                                  dataloader_idx: int = 0) -> None:
        if self.is_disabled or not self._new_loader(dataloader_idx):
            return
        if trainer.sanity_checking:
            self._hide(self.val_sanity_progress_bar_id)
            self.val_sanity_progress_bar_id = self._add("Sanity Checking",
                                                        trainer.num_sanity_val_batches[dataloader_idx])
        else:
            self._hide(self.val_progress_bar_id)
            self.val_progress_bar_id = self._add("Validation", trainer.num_val_batches[dataloader_idx])

    @override
    def on_validation_batch_end(self, trainer: "Trainer", pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        task = self.val_sanity_progress_bar_id if trainer.sanity_checking else self.val_progress_bar_id
        self._advance(task, batch_idx + 1)

    @override
    def on_validation_epoch_end(self, trainer: "Trainer", pl_module: Any) -> None:
        if not trainer.sanity_checking:
            self._print_line(self.val_progress_bar_id)
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._hide(self.val_progress_bar_id)

    @override
    def on_validation_end(self, trainer: "Trainer", pl_module: Any) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._show_metrics(trainer, pl_module, force=True)  # the new validation values

    @override
    def on_test_start(self, trainer: "Trainer", pl_module: Any) -> None:
        self._loader_idx = None

    @override
    def on_test_batch_start(self, trainer: "Trainer", pl_module: Any, batch: Any, batch_idx: int,
                            dataloader_idx: int = 0) -> None:
        if self.is_enabled and self._new_loader(dataloader_idx):
            self._hide(self.test_progress_bar_id)
            self.test_progress_bar_id = self._add("Testing", trainer.num_test_batches[dataloader_idx])

    @override
    def on_test_batch_end(self, trainer: "Trainer", pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                          dataloader_idx: int = 0) -> None:
        self._advance(self.test_progress_bar_id, batch_idx + 1)

    @override
    def on_test_epoch_end(self, trainer: "Trainer", pl_module: Any) -> None:
        self._print_line(self.test_progress_bar_id)

    @override
    def on_predict_start(self, trainer: "Trainer", pl_module: Any) -> None:
        self._loader_idx = None

    @override
    def on_predict_batch_start(self, trainer: "Trainer", pl_module: Any, batch: Any, batch_idx: int,
                               dataloader_idx: int = 0) -> None:
        if self.is_enabled and self._new_loader(dataloader_idx):
            self._hide(self.predict_progress_bar_id)
            self.predict_progress_bar_id = self._add("Predicting", trainer.num_predict_batches[dataloader_idx])

    @override
    def on_predict_batch_end(self, trainer: "Trainer", pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                             dataloader_idx: int = 0) -> None:
        self._advance(self.predict_progress_bar_id, batch_idx + 1)

    @override
    def on_predict_epoch_end(self, trainer: "Trainer", pl_module: Any) -> None:
        self._print_line(self.predict_progress_bar_id)

    # ------------------------------------------------------------------------------------------ the end
    @override
    def teardown(self, trainer: "Trainer", pl_module: Any, stage: str) -> None:
        self._stop()

    @override
    def on_exception(self, trainer: "Trainer", pl_module: Any, exception: BaseException) -> None:
        self._stop()

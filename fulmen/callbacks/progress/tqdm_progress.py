"""``TQDMProgressBar``, the default progress bar when tqdm is installed, and ``Tqdm``, the tqdm class it draws with.

Reading logged values synchronises with the device, so the bars do it on a clock, a few times a second at most,
never on every step: the counters move every ``refresh_rate`` batches, the metrics shown refresh every
``metrics_interval`` seconds.

When the output is not a terminal (a SLURM log, CI, a pipe), carriage-return frames would fill the file with
thousands of partial lines; there the bar prints one plain line every ``plain_interval`` seconds and one when each
stage ends.
"""

from __future__ import annotations

import sys
import time
import math
from typing import TYPE_CHECKING, Any, Optional, Union
from typing_extensions import override

from fulmen.callbacks.progress.progress_bar import ProgressBar

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer

# Numbers in the bar's postfix take at least this many characters (0.33 -> 0.330), so the line does not flicker as
# their digits change; as Lightning pads them.
_PAD_SIZE = 5
_TQDM_CLASS: Optional[type] = None


def _tqdm_class() -> type:
    """``Tqdm``: tqdm's bar (the notebook one in Jupyter, through ``tqdm.auto``) with Lightning's number format,
    built on first use because tqdm is an optional extra."""
    global _TQDM_CLASS
    if _TQDM_CLASS is None:
        from tqdm.auto import tqdm

        class Tqdm(tqdm):  # type: ignore[misc, valid-type]
            """A tqdm bar whose postfix numbers are padded with zeros to a fixed width (``0.33`` shows as
            ``0.330``), as Lightning's bar shows them."""

            @staticmethod
            def format_num(n: Union[int, float, str]) -> str:
                padded = isinstance(n, (float, str))
                text = n if isinstance(n, str) else tqdm.format_num(n)
                if padded and "e" not in text:
                    if "." not in text and len(text) < _PAD_SIZE:
                        try:
                            float(text)
                        except ValueError:
                            return text
                        text += "."
                    text += "0" * (_PAD_SIZE - len(text))
                return text

        Tqdm.__module__ = __name__
        _TQDM_CLASS = Tqdm
    return _TQDM_CLASS


def __getattr__(name: str) -> Any:
    if name == "Tqdm":
        return _tqdm_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def convert_inf(x: Optional[Union[int, float]]) -> Optional[Union[int, float]]:
    """``x``, or None where it is infinite or NaN (tqdm takes None for an unknown total)."""
    if x is None or math.isinf(x) or math.isnan(x):
        return None
    return x


def _total(value: Union[int, float]) -> Optional[int]:
    value = convert_inf(value)
    return None if value is None else int(value)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class _PlainBar:
    """The part of tqdm's interface the bars use, printing whole lines: every ``interval`` seconds and at close."""

    def __init__(self, desc: str, total: Optional[int], interval: float, file: Any) -> None:
        self.desc, self.total, self.n = desc, total, 0
        self.postfix = ""
        self._start = self._last = time.monotonic()
        self._interval = interval
        self._file = file

    def set_postfix(self, metrics: dict[str, Any], refresh: bool = True) -> None:
        self.postfix = ", ".join(f"{k}={_number(v)}" for k, v in metrics.items())

    def update(self, n: int) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            self._print(now)

    def close(self) -> None:
        self._print(time.monotonic())

    def _print(self, now: float) -> None:
        elapsed = now - self._start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        left = ""
        if self.total and rate > 0:
            left = f"<{_clock((self.total - self.n) / rate)}"
        done = f"{self.n}/{self.total}" if self.total is not None else str(self.n)
        line = f"{self.desc}: {done} [{_clock(elapsed)}{left}, {rate:.2f}it/s]"
        print(f"{line} {self.postfix}" if self.postfix else line, file=self._file, flush=True)


class TQDMProgressBar(ProgressBar):
    """tqdm bars for training (one per epoch), validation, test and predict.

    ``refresh_rate``: update the counters every N batches (0 turns the bar off). ``leave``: keep each epoch's bar.
    ``draw_interval``: seconds between draws; ``metrics_interval``: seconds between reads of the logged values.
    ``plain``: print plain lines (every ``plain_interval`` seconds and at the end of each stage) instead of tqdm
    frames; None (the default) does so when standard output is not a terminal.
    """

    def __init__(self, refresh_rate: int = 1, process_position: int = 0, leave: bool = False,
                 metrics_interval: float = 0.5, draw_interval: float = 0.1, plain: Optional[bool] = None,
                 plain_interval: float = 30.0) -> None:
        super().__init__()
        if not isinstance(refresh_rate, int) or refresh_rate < 0:
            raise ValueError(f"TQDMProgressBar(refresh_rate={refresh_rate!r}) must be an int >= 0")
        self.refresh_rate = refresh_rate
        self.process_position = process_position
        self.leave = leave
        self.metrics_interval = metrics_interval
        self.draw_interval = draw_interval  # tqdm's own mininterval: drawing more often is never seen
        self._bars: dict[str, Any] = {}
        self._last_draw: dict[str, float] = {}
        self._counts: dict[str, int] = {}  # each bar's true position (the bar itself moves only when drawn)
        self._last_metrics = float("-inf")  # the first batch shows the metrics
        self._logging_redirect: Any = None
        self.plain = plain
        self.plain_interval = plain_interval

    @property
    @override
    def is_enabled(self) -> bool:
        return self._enabled and self.refresh_rate > 0

    def _is_plain(self) -> bool:
        return self.plain if self.plain is not None else not (_is_terminal(sys.stdout) or _in_notebook())

    def _open(self, key: str, desc: str, total: Optional[int], position: int, leave: bool) -> None:
        self._close(key)
        self._last_draw.pop(key, None)
        if self._is_plain():
            self._bars[key] = _PlainBar(desc, total, self.plain_interval, sys.stdout)
            return
        self._redirect_logging()
        self._bars[key] = _tqdm_class()(desc=desc, total=total, position=self.process_position + position, leave=leave,
                               dynamic_ncols=True, file=sys.stdout, smoothing=0)

    def _redirect_logging(self) -> None:
        """While bars are drawn, fulmen's own log lines (EarlyStopping's reason, the seed) are written through
        tqdm, above the bars, instead of tearing the bar's line."""
        if self._logging_redirect is None:
            import logging

            from tqdm.contrib.logging import logging_redirect_tqdm

            self._logging_redirect = logging_redirect_tqdm(loggers=[logging.getLogger("fulmen")],
                                                           tqdm_class=_tqdm_class())
            self._logging_redirect.__enter__()

    def _restore_logging(self) -> None:
        if self._logging_redirect is not None:
            self._logging_redirect.__exit__(None, None, None)
            self._logging_redirect = None

    def _flush(self, key: str) -> Any:
        """Bar ``key`` moved to its true position (batches that fell between draws), drawn now; None if not open."""
        bar = self._bars.get(key)
        if bar is not None:
            done = self._counts.get(key, bar.n)
            if done != bar.n:
                bar.update(done - bar.n)
        return bar

    @override
    def print(self, *args: Any, sep: str = " ", end: str = "\n", **kwargs: Any) -> None:
        """Print above the bars (``tqdm.write``), so that the bar's line stays whole; a plain ``print`` when no
        bar is drawn. ``LightningModule.print`` and ``Trainer.print`` come here while the bar is on."""
        if not self._bars or self._is_plain():
            print(*args, sep=sep, end=end, **kwargs)
            return
        _tqdm_class().write(sep.join(map(str, args)), file=kwargs.get("file", sys.stdout), end=end)

    def _close(self, key: str) -> None:
        bar = self._bars.pop(key, None)
        if bar is not None:
            done = self._counts.pop(key, bar.n)
            if done != bar.n:  # the last batches fell between draws: the closing frame shows where the stage ended
                bar.update(done - bar.n)
            bar.close()

    def _advance(self, key: str, n: int, total: Optional[int], trainer: "Trainer", pl_module: Any) -> None:
        """Move bar ``key`` to ``n``. Nothing reaches tqdm between draws: per batch this costs one clock read."""
        bar = self._bars.get(key)
        if bar is None:
            return
        self._counts[key] = n
        if n % self.refresh_rate and n != total:
            return
        now = time.monotonic()
        if now - self._last_draw.get(key, float("-inf")) < self.draw_interval and n != total:
            return
        self._last_draw[key] = now
        if key == "train" and now - self._last_metrics >= self.metrics_interval:
            self._last_metrics = now
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
        bar.update(n - bar.n)

    # ---- training
    @override
    def on_train_epoch_start(self, trainer: "Trainer", pl_module: Any) -> None:
        """As Lightning: one training bar for the whole fit, reset at each epoch, which stays on screen when the
        fit ends; with ``leave=True`` a new bar each epoch, each left on screen. Plain lines: one bar an epoch."""
        if not self.is_enabled:
            return
        desc, total = f"Epoch {trainer.current_epoch}", _total(trainer.num_training_batches)
        bar = self._bars.get("train")
        if bar is None or self.leave or isinstance(bar, _PlainBar):
            self._open("train", desc, total, 0, True)
            return
        bar.reset(total=total)
        bar.set_description(desc, refresh=False)
        self._counts["train"] = 0
        self._last_draw.pop("train", None)

    @override
    def on_train_batch_end(self, trainer: "Trainer", pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._advance("train", batch_idx + 1, _total(trainer.num_training_batches), trainer, pl_module)

    @override
    def on_train_epoch_end(self, trainer: "Trainer", pl_module: Any) -> None:
        bar = self._flush("train")
        if bar is not None:
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=True)
            if self.leave or isinstance(bar, _PlainBar):
                self._close("train")

    @override
    def on_train_end(self, trainer: "Trainer", pl_module: Any) -> None:
        self._close("train")  # the last epoch's bar, with its metrics, stays on screen

    # ---- evaluation
    def _eval_start(self, trainer: "Trainer", key: str, desc: str, totals: list[Union[int, float]]) -> None:
        if self.is_enabled:
            total = None if any(t == float("inf") for t in totals) else int(sum(totals))
            self._open(key, desc, total, 1 if "train" in self._bars else 0, False)
            self._eval_seen = 0

    def _eval_batch_end(self, key: str, trainer: "Trainer", pl_module: Any) -> None:
        bar = self._bars.get(key)
        if bar is None:  # no bar drawn (turned off, or a process other than rank zero)
            return
        self._eval_seen += 1
        self._advance(key, self._eval_seen, bar.total, trainer, pl_module)

    @override
    def on_validation_start(self, trainer: "Trainer", pl_module: Any) -> None:
        train = self._bars.get("train")
        if train is not None and not isinstance(train, _PlainBar):
            self._flush("train")  # the epoch bar shows where training stands (45/45), not its last throttled draw
            train.refresh()
        desc = "Sanity Checking" if trainer.sanity_checking else "Validation"
        totals = trainer.num_sanity_val_batches if trainer.sanity_checking else trainer.num_val_batches
        self._eval_start(trainer, "val", desc, totals)

    @override
    def on_validation_batch_end(self, trainer: "Trainer", pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        self._eval_batch_end("val", trainer, pl_module)

    @override
    def on_validation_end(self, trainer: "Trainer", pl_module: Any) -> None:
        self._close("val")
        train = self._bars.get("train")
        if train is not None and not trainer.sanity_checking:
            train.set_postfix(self.get_metrics(trainer, pl_module), refresh=True)  # the new val metrics

    @override
    def on_test_start(self, trainer: "Trainer", pl_module: Any) -> None:
        self._eval_start(trainer, "test", "Testing", trainer.num_test_batches)

    @override
    def on_test_batch_end(self, trainer: "Trainer", pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                          dataloader_idx: int = 0) -> None:
        self._eval_batch_end("test", trainer, pl_module)

    @override
    def on_test_end(self, trainer: "Trainer", pl_module: Any) -> None:
        self._close("test")

    @override
    def on_predict_start(self, trainer: "Trainer", pl_module: Any) -> None:
        self._eval_start(trainer, "predict", "Predicting", trainer.num_predict_batches)

    @override
    def on_predict_batch_end(self, trainer: "Trainer", pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                             dataloader_idx: int = 0) -> None:
        self._eval_batch_end("predict", trainer, pl_module)

    @override
    def on_predict_end(self, trainer: "Trainer", pl_module: Any) -> None:
        self._close("predict")

    @override
    def teardown(self, trainer: "Trainer", pl_module: Any, stage: str) -> None:
        for key in list(self._bars):
            self._close(key)
        self._restore_logging()

    @override
    def on_exception(self, trainer: "Trainer", pl_module: Any, exception: BaseException) -> None:
        for key in list(self._bars):
            self._close(key)
        self._restore_logging()


def _in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (where tqdm.auto draws widget bars, and stdout is no terminal)."""
    shell = sys.modules.get("IPython")
    if shell is None or "ipykernel" not in sys.modules:
        return False
    ipython = shell.get_ipython() if hasattr(shell, "get_ipython") else None
    return ipython is not None and type(ipython).__name__ == "ZMQInteractiveShell"


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False

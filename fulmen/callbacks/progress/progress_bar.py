"""ProgressBar: the base class of progress bars, and the metrics every bar shows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Union
from typing_extensions import override

from fulmen.callbacks.callback import Callback

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer


class ProgressBar(Callback):
    """Base class of progress bars: what they show (``get_metrics``) and whether they are on."""

    def __init__(self) -> None:
        self._enabled = True

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    @override
    def setup(self, trainer: "Trainer", pl_module: Any, stage: str) -> None:
        if not trainer.is_global_zero:
            self.disable()  # one bar per run: the other processes draw nothing

    def print(self, *args: Any, **kwargs: Any) -> None:
        """Print a line without breaking the bar (a bar that draws in place overrides this); here, ``print``."""
        print(*args, **kwargs)

    def get_metrics(self, trainer: "Trainer", pl_module: Any) -> dict[str, Union[int, str, float]]:
        """The values shown: ``v_num`` (the logger's version, see ``get_standard_metrics``), then
        ``progress_bar_metrics``."""
        metrics: dict[str, Union[int, str, float]] = dict(get_standard_metrics(trainer))
        metrics.update(trainer.progress_bar_metrics)
        return metrics


def get_standard_metrics(trainer: "Trainer") -> dict[str, Union[int, str]]:
    """What every bar shows besides the logged values: ``v_num``, the version of the run's logger (the last four
    characters of a version string; several loggers' distinct versions joined by "_"); nothing without a logger."""
    loggers = trainer.loggers
    if not loggers:
        return {}
    if len(loggers) == 1:
        version = loggers[0].version
    else:
        version = "_".join(dict.fromkeys(str(logger.version) for logger in loggers))
    if version in (None, ""):
        return {}
    return {"v_num": version[-4:] if isinstance(version, str) else version}

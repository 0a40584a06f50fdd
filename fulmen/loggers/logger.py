"""The Logger base class: what the Trainer calls to record metrics and hyperparameters."""

from __future__ import annotations

from abc import ABC, abstractmethod
from argparse import Namespace
from typing import Any, Optional, Union


class Logger(ABC):
    """Subclass to send metrics somewhere. The Trainer calls ``log_metrics(metrics, step)`` with Python numbers
    every ``log_every_n_steps`` training steps and at the end of each epoch, then ``save()``; ``finalize(status)``
    when the run ends."""

    @property
    @abstractmethod
    def name(self) -> Optional[str]:
        """The experiment name."""

    @property
    @abstractmethod
    def version(self) -> Optional[Union[int, str]]:
        """The experiment version."""

    @property
    def root_dir(self) -> Optional[str]:
        return None

    @property
    def log_dir(self) -> Optional[str]:
        return None

    @property
    def save_dir(self) -> Optional[str]:
        return None

    @property
    def group_separator(self) -> str:
        return "/"

    @abstractmethod
    def log_metrics(self, metrics: dict[str, float], step: Optional[int] = None) -> None:
        """Record ``metrics`` (name -> number) at ``step``."""

    @abstractmethod
    def log_hyperparams(self, params: Union[dict[str, Any], Namespace], *args: Any, **kwargs: Any) -> None:
        """Record the run's hyperparameters."""

    def log_graph(self, model: Any, input_array: Any = None) -> None:
        """Record the model graph (optional)."""

    def save(self) -> None:
        """Flush what was logged (optional)."""

    def finalize(self, status: str) -> None:
        """The run ended with ``status`` ('success' or 'failed')."""
        self.save()

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """A checkpoint was saved (optional)."""

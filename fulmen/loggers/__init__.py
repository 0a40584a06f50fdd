"""Loggers: where logged metrics and hyperparameters go."""

from fulmen.loggers.logger import Logger

__all__ = ["Logger"]

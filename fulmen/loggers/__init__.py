"""Loggers: where logged metrics and hyperparameters go."""

from fulmen.loggers.csv_logs import CSVLogger
from fulmen.loggers.logger import Logger

__all__ = ["CSVLogger", "Logger"]

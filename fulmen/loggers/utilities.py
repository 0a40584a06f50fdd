"""Helpers the loggers share, under Lightning's module name: the logger base and its rank-zero experiment
decorator, and the dict helpers (``fulmen.loggers.logger`` holds them)."""

from fulmen.loggers.logger import merge_dicts, rank_zero_experiment

__all__ = ["merge_dicts", "rank_zero_experiment"]

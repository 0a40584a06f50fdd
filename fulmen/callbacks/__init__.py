"""Callbacks: objects whose hooks the Trainer calls at fixed points of a run.

Each callback is imported when first used (``from fulmen.callbacks import EarlyStopping``), so that
``import fulmen`` does not pay for all of them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from fulmen.callbacks.callback import Callback

if TYPE_CHECKING:  # the real classes for type checkers and editors; at run time each is imported on first use
    from fulmen.callbacks.batch_size_finder import BatchSizeFinder
    from fulmen.callbacks.checkpoint import Checkpoint
    from fulmen.callbacks.device_stats_monitor import DeviceStatsMonitor
    from fulmen.callbacks.early_stopping import EarlyStopping, EarlyStoppingReason
    from fulmen.callbacks.finetuning import BackboneFinetuning, BaseFinetuning
    from fulmen.callbacks.gradient_accumulation_scheduler import GradientAccumulationScheduler
    from fulmen.callbacks.lambda_function import LambdaCallback
    from fulmen.callbacks.lr_finder import LearningRateFinder
    from fulmen.callbacks.lr_monitor import LearningRateMonitor
    from fulmen.callbacks.model_checkpoint import ModelCheckpoint
    from fulmen.callbacks.model_summary import ModelSummary
    from fulmen.callbacks.on_exception_checkpoint import OnExceptionCheckpoint
    from fulmen.callbacks.prediction_writer import BasePredictionWriter
    from fulmen.callbacks.progress.progress_bar import ProgressBar
    from fulmen.callbacks.progress.rich_progress import RichProgressBar, RichProgressBarTheme
    from fulmen.callbacks.progress.tqdm_progress import TQDMProgressBar
    from fulmen.callbacks.pruning import ModelPruning
    from fulmen.callbacks.rich_model_summary import RichModelSummary
    from fulmen.callbacks.spike import SpikeDetection
    from fulmen.callbacks.stochastic_weight_avg import StochasticWeightAveraging
    from fulmen.callbacks.throughput_monitor import ThroughputMonitor
    from fulmen.callbacks.timer import Timer
    from fulmen.callbacks.weight_averaging import EMAWeightAveraging, WeightAveraging

_WHERE = {  # public name -> the module under fulmen/callbacks/ that defines it
    "BackboneFinetuning": "finetuning",
    "BaseFinetuning": "finetuning",
    "BasePredictionWriter": "prediction_writer",
    "BatchSizeFinder": "batch_size_finder",
    "Checkpoint": "checkpoint",
    "DeviceStatsMonitor": "device_stats_monitor",
    "EarlyStopping": "early_stopping",
    "EarlyStoppingReason": "early_stopping",
    "EMAWeightAveraging": "weight_averaging",
    "GradientAccumulationScheduler": "gradient_accumulation_scheduler",
    "LambdaCallback": "lambda_function",
    "LearningRateFinder": "lr_finder",
    "LearningRateMonitor": "lr_monitor",
    "ModelCheckpoint": "model_checkpoint",
    "ModelPruning": "pruning",
    "ModelSummary": "model_summary",
    "OnExceptionCheckpoint": "on_exception_checkpoint",
    "ProgressBar": "progress.progress_bar",
    "RichModelSummary": "rich_model_summary",
    "RichProgressBar": "progress.rich_progress",
    "RichProgressBarTheme": "progress.rich_progress",
    "SpikeDetection": "spike",
    "StochasticWeightAveraging": "stochastic_weight_avg",
    "ThroughputMonitor": "throughput_monitor",
    "Timer": "timer",
    "TQDMProgressBar": "progress.tqdm_progress",
    "WeightAveraging": "weight_averaging",
}

__all__ = ["Callback", *sorted(_WHERE)]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'fulmen.callbacks' has no attribute {name!r}")
    return getattr(importlib.import_module(f"fulmen.callbacks.{module}"), name)


def __dir__() -> list[str]:
    return sorted(__all__)

"""Callbacks: objects whose hooks the Trainer calls at fixed points of a run.

Each callback is imported when first used (``from fulmen.callbacks import EarlyStopping``), so that
``import fulmen`` does not pay for all of them.
"""

from __future__ import annotations

import importlib
from typing import Any

from fulmen.callbacks.callback import Callback

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

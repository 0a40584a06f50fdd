"""The types of Lightning's public signatures, for annotating a LightningModule as Lightning's users do
(``def training_step(self, batch, batch_idx) -> STEP_OUTPUT``), and the scheduler configuration the Trainer keeps
for each ``lr_scheduler`` entry of ``configure_optimizers``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Protocol, TypedDict, Union

import torch
from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

try:  # Python 3.11
    from typing import NotRequired
except ImportError:  # pragma: no cover
    from typing_extensions import NotRequired

# What a step returns: a loss tensor, a dict with a "loss" (and anything else), or None to skip the batch.
STEP_OUTPUT = Optional[Union[Tensor, Mapping[str, Any]]]
# What the *_dataloader hooks return: a DataLoader, or a collection (list, dict) of them.
TRAIN_DATALOADERS = Any
EVAL_DATALOADERS = Any

LRSchedulerTypeTuple = (LRScheduler, ReduceLROnPlateau)
LRSchedulerTypeUnion = Union[LRScheduler, ReduceLROnPlateau]
LRSchedulerType = Union[type[LRScheduler], type[ReduceLROnPlateau]]
LRSchedulerPLType = Union[LRScheduler, ReduceLROnPlateau]


@dataclass
class LRSchedulerConfig:
    """How and when the Trainer steps one learning-rate scheduler (the keys of an ``lr_scheduler`` dict):
    every ``frequency`` epochs or optimizer steps (``interval``), with ``monitor`` naming the metric a
    ReduceLROnPlateau reads (``strict``: a missing metric raises)."""

    scheduler: Any
    name: Optional[str] = None
    interval: str = "epoch"
    frequency: int = 1
    reduce_on_plateau: bool = False
    monitor: Optional[str] = None
    strict: bool = True


class LRSchedulerConfigType(TypedDict, total=False):
    """An ``lr_scheduler`` dict of ``configure_optimizers``; only ``scheduler`` is required."""

    scheduler: Any
    name: Optional[str]
    interval: str
    frequency: int
    reduce_on_plateau: bool
    monitor: Optional[str]
    strict: bool


class OptimizerConfig(TypedDict):
    """``{"optimizer": opt}``."""

    optimizer: Optimizer


class OptimizerLRSchedulerConfig(TypedDict):
    """``{"optimizer": opt, "lr_scheduler": scheduler or its dict, "monitor": metric}``."""

    optimizer: Optimizer
    lr_scheduler: NotRequired[Union[LRSchedulerTypeUnion, LRSchedulerConfigType]]
    monitor: NotRequired[str]


# Every form ``configure_optimizers`` may return.
OptimizerLRScheduler = Optional[Union[
    Optimizer,
    Sequence[Optimizer],
    tuple[Sequence[Optimizer], Sequence[Union[LRSchedulerTypeUnion, LRSchedulerConfig]]],
    OptimizerConfig,
    OptimizerLRSchedulerConfig,
    Sequence[OptimizerConfig],
    Sequence[OptimizerLRSchedulerConfig],
]]


class DistributedDataParallel(Protocol):
    """What the Trainer needs of a module wrapped for data parallelism: its ``module`` and ``forward``."""

    module: torch.nn.Module

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...

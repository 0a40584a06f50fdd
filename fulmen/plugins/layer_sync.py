"""Layer synchronisation: layers whose statistics must be shared by the processes of a run (batch norm)."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn
from typing_extensions import override


class LayerSync(ABC):
    """Turns a module's layers into their synchronised versions for a multi-process run (``apply``), and back
    (``revert``). ``Trainer(plugins=[MyLayerSync()])`` uses one of your own."""

    @abstractmethod
    def apply(self, model: nn.Module) -> nn.Module:
        """The module with its layers synchronised."""

    @abstractmethod
    def revert(self, model: nn.Module) -> nn.Module:
        """The module with its synchronised layers back to plain ones."""


class TorchSyncBatchNorm(LayerSync):
    """Batch norm layers as ``torch.nn.SyncBatchNorm`` (``Trainer(sync_batchnorm=True)``): the batch statistics
    are computed over every process's batch. With one process there is nothing to share."""

    @override
    def apply(self, model: nn.Module) -> nn.Module:
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)

    @override
    def revert(self, model: nn.Module) -> nn.Module:
        """Replace each SyncBatchNorm by a BatchNorm of the same size, with the same weights and statistics (the
        number of dimensions is checked by neither, so ``BatchNorm2d`` stands for all)."""
        converted = model
        if isinstance(model, nn.SyncBatchNorm):
            converted = _BatchNormXd(model.num_features, model.eps, model.momentum, model.affine,
                                     model.track_running_stats)
            if model.affine:
                with torch.no_grad():
                    converted.weight = model.weight
                    converted.bias = model.bias
            converted.running_mean = model.running_mean
            converted.running_var = model.running_var
            converted.num_batches_tracked = model.num_batches_tracked
            converted.training = model.training
        for name, child in model.named_children():
            converted.add_module(name, self.revert(child))
        return converted


class _BatchNormXd(nn.modules.batchnorm._BatchNorm):
    """A batch norm layer of any number of dimensions (what a reverted SyncBatchNorm becomes)."""

    @override
    def _check_input_dim(self, input: torch.Tensor) -> None:
        return None

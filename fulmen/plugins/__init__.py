"""Plugins passed as ``Trainer(plugins=[...])``, under the names Lightning gives them: precision
(``plugins.precision``), cluster environments (``plugins.environments``), checkpoint IO (``plugins.io``) and layer
synchronisation (``plugins.layer_sync``)."""

from fulmen.plugins.io import AsyncCheckpointIO, CheckpointIO, TorchCheckpointIO, XLACheckpointIO
from fulmen.plugins.layer_sync import LayerSync, TorchSyncBatchNorm
from fulmen.plugins.precision import (DeepSpeedPrecision, DoublePrecision, FSDPPrecision, HalfPrecision,
                                      MixedPrecision, Precision, TransformerEnginePrecision, XLAPrecision)

__all__ = ["AsyncCheckpointIO", "CheckpointIO", "DeepSpeedPrecision", "DoublePrecision", "FSDPPrecision",
           "HalfPrecision", "LayerSync", "MixedPrecision", "Precision", "TorchCheckpointIO", "TorchSyncBatchNorm",
           "TransformerEnginePrecision", "XLACheckpointIO", "XLAPrecision"]

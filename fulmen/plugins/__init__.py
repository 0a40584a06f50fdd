"""Plugins passed as ``Trainer(plugins=[...])``, under the names Lightning gives them: precision
(``plugins.precision``), cluster environments (``plugins.environments``), checkpoint IO (``plugins.io``) and layer
synchronisation (``plugins.layer_sync``)."""

from fulmen.plugins.precision import (DeepSpeedPrecision, DoublePrecision, FSDPPrecision, HalfPrecision,
                                      MixedPrecision, Precision, TransformerEnginePrecision, XLAPrecision)

__all__ = ["DeepSpeedPrecision", "DoublePrecision", "FSDPPrecision", "HalfPrecision", "MixedPrecision", "Precision",
           "TransformerEnginePrecision", "XLAPrecision"]

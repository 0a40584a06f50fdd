"""Plugins passed as ``Trainer(plugins=[...])``: the precision classes, under the names Lightning gives them
(``lightning.pytorch.plugins.MixedPrecision`` and friends)."""

from fulmen.precision import (DoublePrecision, HalfPrecision, MixedPrecision, Precision,
                              TransformerEnginePrecision)

__all__ = ["DoublePrecision", "HalfPrecision", "MixedPrecision", "Precision", "TransformerEnginePrecision"]

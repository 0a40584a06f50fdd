"""``lightning.pytorch.plugins.precision``'s names: the precision classes of ``fulmen.precision``."""

from fulmen.precision import (DoublePrecision, HalfPrecision, MixedPrecision, Precision,
                              TransformerEnginePrecision)

__all__ = ["DoublePrecision", "HalfPrecision", "MixedPrecision", "Precision", "TransformerEnginePrecision"]

"""The precision plugins, under Lightning's names (``Trainer(plugins=[MixedPrecision("bf16-mixed", "cuda")])``)."""

from fulmen.plugins.precision.amp import MixedPrecision
from fulmen.plugins.precision.deepspeed import DeepSpeedPrecision
from fulmen.plugins.precision.double import DoublePrecision
from fulmen.plugins.precision.fsdp import FSDPPrecision
from fulmen.plugins.precision.half import HalfPrecision
from fulmen.plugins.precision.precision import Precision
from fulmen.plugins.precision.transformer_engine import TransformerEnginePrecision
from fulmen.plugins.precision.xla import XLAPrecision

__all__ = ["DeepSpeedPrecision", "DoublePrecision", "FSDPPrecision", "HalfPrecision", "MixedPrecision", "Precision",
           "TransformerEnginePrecision", "XLAPrecision"]

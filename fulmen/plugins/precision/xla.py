"""XLAPrecision: a precision mode on XLA devices (TPUs)."""

from __future__ import annotations

from fulmen.plugins.precision.modes import StrategyPrecision


class XLAPrecision(StrategyPrecision):
    """``Trainer(accelerator="tpu", plugins=[XLAPrecision("bf16-true")])``: the same as ``precision="bf16-true"``.
    float16 autocast and float64 are not run on XLA devices."""

    modes = ("32-true", "16-true", "bf16-true", "bf16-mixed")

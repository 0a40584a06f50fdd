"""DeepSpeedPrecision: a precision mode for ``DeepSpeedStrategy`` (whose engine runs it from its config)."""

from __future__ import annotations

from fulmen.plugins.precision.modes import StrategyPrecision


class DeepSpeedPrecision(StrategyPrecision):
    """``Trainer(strategy="deepspeed", plugins=[DeepSpeedPrecision("bf16-mixed")])``: the same as
    ``precision="bf16-mixed"``. The strategy writes the mode into DeepSpeed's config."""

    modes = ("32-true", "16-true", "bf16-true", "16-mixed", "bf16-mixed")

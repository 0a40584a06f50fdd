"""FSDPPrecision: a precision mode for ``FSDPStrategy`` (which turns it into FSDP's mixed-precision policy)."""

from __future__ import annotations

from fulmen.plugins.precision.modes import StrategyPrecision


class FSDPPrecision(StrategyPrecision):
    """``Trainer(strategy="fsdp", plugins=[FSDPPrecision("bf16-mixed")])``: the same as
    ``precision="bf16-mixed"``; ``scaler`` is the GradScaler of '16-mixed'."""

    modes = ("32-true", "16-true", "bf16-true", "16-mixed", "bf16-mixed")

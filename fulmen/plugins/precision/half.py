"""'16-true' and 'bf16-true': half-precision weights and inputs."""

from __future__ import annotations

import torch

from fulmen.plugins.precision.precision import Precision


class HalfPrecision(Precision):
    """'16-true' / 'bf16-true': module and floating-point inputs in half or bfloat16, no scaler."""

    def __init__(self, precision: str = "16-true") -> None:
        if precision not in ("16-true", "bf16-true"):
            raise ValueError(f"HalfPrecision(precision={precision!r}) must be '16-true' or 'bf16-true'")
        self.precision = precision
        self.dtype = torch.float16 if precision == "16-true" else torch.bfloat16

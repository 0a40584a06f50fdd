"""'64-true': float64 weights and inputs."""

from __future__ import annotations

import torch

from fulmen.plugins.precision.precision import Precision


class DoublePrecision(Precision):
    """'64-true': module and floating-point inputs in float64."""

    precision = "64-true"
    dtype = torch.float64

"""'64-true': float64 weights and inputs."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from typing_extensions import override

from fulmen.plugins.precision.precision import Precision
from fulmen.utilities.apply_to_collection import apply_to_collection
from fulmen.utilities.rank_zero import rank_zero_deprecation


class DoublePrecision(Precision):
    """'64-true': module and floating-point inputs in float64."""

    precision = "64-true"
    dtype = torch.float64


class LightningDoublePrecisionModule(nn.Module):
    """Wraps a LightningModule so that the floating-point inputs of its steps and forward become float64.

    Kept for code written against Lightning's name; '64-true' converts the batches itself, so the wrapper is not
    needed (a deprecation warning says so).
    """

    def __init__(self, pl_module: nn.Module) -> None:
        super().__init__()
        rank_zero_deprecation(f"{type(self).__name__} is not needed: precision='64-true' converts the inputs "
                              "(trainer.precision_plugin.convert_input(batch) does it by hand)")
        self.module = pl_module

    @staticmethod
    def _to_double(collection: Any) -> Any:
        return apply_to_collection(collection, Tensor,
                                   lambda t: t.to(torch.float64) if torch.is_floating_point(t) else t)

    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        return self.module.training_step(*self._to_double(args), **self._to_double(kwargs))

    def validation_step(self, *args: Any, **kwargs: Any) -> Any:
        return self.module.validation_step(*self._to_double(args), **self._to_double(kwargs))

    def test_step(self, *args: Any, **kwargs: Any) -> Any:
        return self.module.test_step(*self._to_double(args), **self._to_double(kwargs))

    def predict_step(self, *args: Any, **kwargs: Any) -> Any:
        return self.module.predict_step(*self._to_double(args), **self._to_double(kwargs))

    @override
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*self._to_double(args), **self._to_double(kwargs))

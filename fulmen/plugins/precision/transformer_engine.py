"""'transformer-engine': FP8 matrix products with NVIDIA's Transformer Engine."""

from __future__ import annotations

import contextlib
from typing import Any, Optional

import torch
from typing_extensions import override

from fulmen.plugins.precision.precision import Precision


class TransformerEnginePrecision(Precision):
    """'transformer-engine': FP8 matrix products with NVIDIA's Transformer Engine (``transformer_engine``, CUDA
    only). Linear and LayerNorm layers are replaced by Transformer Engine's (``replace_layers``), the weights are
    kept in ``weights_dtype``, and the forward runs under ``te.fp8_autocast(recipe)`` with the rest under autocast to
    ``fallback_compute_dtype``."""

    def __init__(self, *, weights_dtype: torch.dtype, recipe: Any = None, replace_layers: Optional[bool] = None,
                 fallback_compute_dtype: Optional[torch.dtype] = None) -> None:
        try:
            import transformer_engine.pytorch  # noqa: F401
        except ImportError as err:
            raise ModuleNotFoundError("precision='transformer-engine' needs NVIDIA's transformer_engine package and "
                                      "a CUDA GPU: pip install transformer_engine[pytorch]") from err
        self.precision = "transformer-engine" if weights_dtype == torch.bfloat16 else "transformer-engine-float16"
        self.weights_dtype = weights_dtype
        self.recipe = recipe
        self.replace_layers = True if replace_layers is None else replace_layers
        self.fallback_compute_dtype = fallback_compute_dtype or weights_dtype
        self.dtype = weights_dtype
        # The context every step runs in (the loops enter ``autocast()`` when it is set; forward_context too).
        self.autocast = self._fp8

    @property
    @override
    def compute_dtype(self) -> torch.dtype:
        return torch.int8  # FP8 matrix products: the peak-FLOPs table's 8-bit entry

    @override
    def convert_module(self, module: torch.nn.Module) -> torch.nn.Module:
        if self.replace_layers:
            _to_transformer_engine(module)
        return module.to(dtype=self.weights_dtype)

    @contextlib.contextmanager
    def _fp8(self) -> Any:
        import transformer_engine.pytorch as te

        with torch.autocast("cuda", dtype=self.fallback_compute_dtype), te.fp8_autocast(enabled=True,
                                                                                         fp8_recipe=self.recipe):
            yield


def _to_transformer_engine(module: torch.nn.Module) -> None:
    """Replace each Linear (with both sizes divisible by 16, as FP8 needs) and LayerNorm of ``module`` by Transformer
    Engine's, keeping the weights."""
    import transformer_engine.pytorch as te

    for name, child in module.named_children():
        if isinstance(child, torch.nn.Linear) and child.in_features % 16 == 0 and child.out_features % 16 == 0:
            new: torch.nn.Module = te.Linear(child.in_features, child.out_features, bias=child.bias is not None,
                                             params_dtype=child.weight.dtype, device=child.weight.device)
        elif isinstance(child, torch.nn.LayerNorm) and child.elementwise_affine:
            new = te.LayerNorm(child.normalized_shape[0], eps=child.eps, params_dtype=child.weight.dtype,
                               device=child.weight.device)
        else:
            _to_transformer_engine(child)
            continue
        with torch.no_grad():
            new.weight.copy_(child.weight)
            if getattr(child, "bias", None) is not None:
                new.bias.copy_(child.bias)
        setattr(module, name, new)

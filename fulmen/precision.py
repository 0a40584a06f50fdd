"""One small class per precision mode: what the forward runs under, how the loss is scaled, how grads are clipped."""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Optional

import torch
from torch import Tensor

from fulmen.utilities.apply_to_collection import apply_to_collection


_NO_CONTEXT = contextlib.nullcontext()  # reusable: entering it twice in a row is fine, and saves an object per step


class Precision:
    """'32-true': plain float32, nothing to do. The base of the other modes.

    Pass an instance of one of these classes as ``Trainer(plugins=[...])`` instead of ``precision=`` to configure
    it further (a GradScaler of your own, say); ``precision`` holds the mode's name.
    """

    precision = "32-true"
    dtype: Optional[torch.dtype] = None  # the dtype modules and inputs are converted to, for the *-true modes
    # A GradScaler for '16-mixed': the step scales the loss and unscales the gradients only when it is set.
    scaler: Optional[torch.amp.GradScaler] = None
    # Makes the autocast context of the mixed modes; None when the forward runs as it is (the training step then
    # skips the with-statement altogether).
    autocast: Optional[Callable[[], contextlib.AbstractContextManager[Any]]] = None

    @property
    def name(self) -> str:
        """The mode, as ``Trainer(precision=...)`` names it."""
        return self.precision

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype matrix products run in (what a device's peak FLOPs are looked up for)."""
        return self.dtype or torch.float32

    def forward_context(self) -> contextlib.AbstractContextManager[Any]:
        """The context ``training_step`` and the eval steps run in."""
        return _NO_CONTEXT if self.autocast is None else self.autocast()

    def convert_module(self, module: torch.nn.Module) -> torch.nn.Module:
        return module if self.dtype is None else module.to(dtype=self.dtype)

    def convert_input(self, batch: Any) -> Any:
        if self.dtype is None:
            return batch
        dtype = self.dtype
        return apply_to_collection(batch, Tensor, lambda t: t.to(dtype) if t.is_floating_point() else t)

    def optimizer_step(self, optimizer: Any, closure: Optional[Callable[[], Any]] = None, **kwargs: Any) -> Any:
        if closure is not None:
            return optimizer.step(closure=closure, **kwargs)
        return optimizer.step(**kwargs)

    def unscale_gradients(self, optimizer: Any) -> None:
        """Divide ``optimizer``'s gradients by the loss scale (mixed precision with a GradScaler only)."""

    def clip_gradients(self, optimizer: Any, clip_val: float, algorithm: str) -> None:
        if clip_val <= 0:
            return
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if algorithm == "value":
            torch.nn.utils.clip_grad_value_(params, clip_val)
        else:
            # Returns the total norm as a tensor; we never read it, so there is no host-device sync here.
            torch.nn.utils.clip_grad_norm_(params, clip_val)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        return None


class DoublePrecision(Precision):
    """'64-true': module and floating-point inputs in float64."""

    precision = "64-true"
    dtype = torch.float64


class HalfPrecision(Precision):
    """'16-true' / 'bf16-true': module and floating-point inputs in half or bfloat16, no scaler."""

    def __init__(self, precision: str = "16-true") -> None:
        if precision not in ("16-true", "bf16-true"):
            raise ValueError(f"HalfPrecision(precision={precision!r}) must be '16-true' or 'bf16-true'")
        self.precision = precision
        self.dtype = torch.float16 if precision == "16-true" else torch.bfloat16


class MixedPrecision(Precision):
    """'16-mixed' / 'bf16-mixed': weights in float32, forward under autocast on ``device`` ('cuda', 'cpu', 'mps');
    float16 scales the loss with a GradScaler (``scaler``, or a default one)."""

    def __init__(self, precision: str, device: str, scaler: Optional[torch.amp.GradScaler] = None) -> None:
        if precision not in ("16-mixed", "bf16-mixed"):
            raise ValueError(f"MixedPrecision(precision={precision!r}) must be '16-mixed' or 'bf16-mixed'")
        if scaler is not None and precision == "bf16-mixed":
            raise ValueError("MixedPrecision('bf16-mixed', scaler=...): bfloat16 has float32's range and needs no "
                             "loss scaling; drop the scaler")
        self.precision = precision
        self.device = device
        self.autocast_dtype = torch.float16 if precision == "16-mixed" else torch.bfloat16
        self.scaler = scaler if scaler is not None else (
            torch.amp.GradScaler(device) if precision == "16-mixed" else None)
        self.autocast = functools.partial(torch.autocast, device, dtype=self.autocast_dtype)
        self._unscaled: set[int] = set()  # optimizers whose gradients were unscaled since their last step

    def unscale_gradients(self, optimizer: Any) -> None:
        # Once per step: the hooks, automatic clipping and a manual clip_gradients all want the true gradients, and
        # GradScaler refuses a second unscale_ before update().
        if self.scaler is not None and id(optimizer) not in self._unscaled:
            self.scaler.unscale_(optimizer)
            self._unscaled.add(id(optimizer))

    def clip_gradients(self, optimizer: Any, clip_val: float, algorithm: str) -> None:
        if clip_val > 0:
            # Clip the true gradients, not the scaled ones (Lightning clips scaled ones under manual optimization).
            self.unscale_gradients(optimizer)
        super().clip_gradients(optimizer, clip_val, algorithm)

    @property
    def compute_dtype(self) -> torch.dtype:
        return self.autocast_dtype

    def optimizer_step(self, optimizer: Any, closure: Optional[Callable[[], Any]] = None, **kwargs: Any) -> Any:
        if self.scaler is None:
            return super().optimizer_step(optimizer, closure, **kwargs)
        # GradScaler.step takes no closure: run it first, then step (skipped by the scaler on inf/nan grads).
        result = closure() if closure is not None else None
        out = self.scaler.step(optimizer, **kwargs)
        self.scaler.update()
        self._unscaled.discard(id(optimizer))
        return out if closure is None else result

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self.scaler is not None and state_dict:
            self.scaler.load_state_dict(state_dict)


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

    @property
    def compute_dtype(self) -> torch.dtype:
        return torch.int8  # FP8 matrix products: the peak-FLOPs table's 8-bit entry

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

    def forward_context(self) -> contextlib.AbstractContextManager[Any]:
        return self._fp8()


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

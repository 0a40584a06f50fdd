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
    """'32-true': plain float32, nothing to do. The base of the other modes."""

    name = "32-true"
    dtype: Optional[torch.dtype] = None  # the dtype modules and inputs are converted to, for the *-true modes
    # A GradScaler for '16-mixed': the step scales the loss and unscales the gradients only when it is set.
    scaler: Optional[torch.amp.GradScaler] = None
    # Makes the autocast context of the mixed modes; None when the forward runs as it is (the training step then
    # skips the with-statement altogether).
    autocast: Optional[Callable[[], contextlib.AbstractContextManager[Any]]] = None

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

    name = "64-true"
    dtype = torch.float64


class HalfPrecision(Precision):
    """'16-true' / 'bf16-true': module and floating-point inputs in half or bfloat16, no scaler."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dtype = torch.float16 if name == "16-true" else torch.bfloat16


class MixedPrecision(Precision):
    """'16-mixed' / 'bf16-mixed': weights in float32, forward under autocast; float16 uses a GradScaler."""

    def __init__(self, name: str, device_type: str) -> None:
        self.name = name
        self.device_type = device_type
        self.autocast_dtype = torch.float16 if name == "16-mixed" else torch.bfloat16
        self.scaler = torch.amp.GradScaler(device_type) if name == "16-mixed" else None
        self.autocast = functools.partial(torch.autocast, device_type, dtype=self.autocast_dtype)

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
        return out if closure is None else result

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self.scaler is not None and state_dict:
            self.scaler.load_state_dict(state_dict)

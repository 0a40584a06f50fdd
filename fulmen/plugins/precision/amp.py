"""'16-mixed' and 'bf16-mixed': float32 weights, the forward under autocast (Lightning's ``precision.amp``)."""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional

import torch
from typing_extensions import override

from fulmen.plugins.precision.precision import Precision


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

    @override
    def unscale_gradients(self, optimizer: Any) -> None:
        # Once per step: the hooks, automatic clipping and a manual clip_gradients all want the true gradients, and
        # GradScaler refuses a second unscale_ before update().
        if self.scaler is not None and id(optimizer) not in self._unscaled:
            self.scaler.unscale_(optimizer)
            self._unscaled.add(id(optimizer))

    @override
    def clip_gradients(self, optimizer: Any, clip_val: float, algorithm: str) -> None:
        if clip_val > 0:
            # Clip the true gradients, not the scaled ones (Lightning clips scaled ones under manual optimization).
            self.unscale_gradients(optimizer)
        super().clip_gradients(optimizer, clip_val, algorithm)

    @property
    @override
    def compute_dtype(self) -> torch.dtype:
        return self.autocast_dtype

    @override
    def optimizer_step(self, optimizer: Any, closure: Optional[Callable[[], Any]] = None, **kwargs: Any) -> Any:
        if self.scaler is None:
            return super().optimizer_step(optimizer, closure, **kwargs)
        # GradScaler.step takes no closure: run it first, then step (skipped by the scaler on inf/nan grads).
        result = closure() if closure is not None else None
        out = self.scaler.step(optimizer, **kwargs)
        self.scaler.update()
        self._unscaled.discard(id(optimizer))
        return out if closure is None else result

    @override
    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler is not None else {}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self.scaler is not None and state_dict:
            self.scaler.load_state_dict(state_dict)

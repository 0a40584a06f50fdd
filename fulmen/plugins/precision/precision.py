"""The Precision base class ('32-true'): what the forward runs under, how the loss is scaled, how grads are
clipped. One small subclass per other mode, one file each (Lightning's ``plugins.precision`` layout)."""

from __future__ import annotations

import contextlib
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

"""The precision plugin of a mode name, and the strategy-specific plugins that run one.

``for_mode("bf16-mixed", "cuda")`` is the plugin ``Trainer(precision="bf16-mixed")`` uses on CUDA. Lightning also
names a plugin per strategy (``DeepSpeedPrecision``, ``FSDPPrecision``, ``XLAPrecision``); in fulmen the strategy
reads the mode's name and does the strategy-specific part itself, so each of these runs the plain plugin of its mode,
with the device kind the Trainer picks (``bind``).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Optional

import torch
from typing_extensions import override

from fulmen.plugins.precision.amp import MixedPrecision
from fulmen.plugins.precision.double import DoublePrecision
from fulmen.plugins.precision.half import HalfPrecision
from fulmen.plugins.precision.precision import Precision


def for_mode(name: str, device: str, scaler: Optional[torch.amp.GradScaler] = None) -> Precision:
    """The plugin that runs mode ``name`` ('32-true', '64-true', '16-true', 'bf16-true', '16-mixed',
    'bf16-mixed') on a ``device`` of that kind ('cpu', 'cuda', 'mps', 'xla')."""
    if name == "64-true":
        return DoublePrecision()
    if name in ("16-true", "bf16-true"):
        return HalfPrecision(name)
    if name in ("16-mixed", "bf16-mixed"):
        return MixedPrecision(name, device, scaler)
    return Precision()


class StrategyPrecision(Precision):
    """A precision plugin named for a strategy that runs one of ``modes`` as the plain plugin of that mode does."""

    modes: tuple[str, ...] = ()

    def __init__(self, precision: str = "32-true", scaler: Optional[torch.amp.GradScaler] = None) -> None:
        if precision not in self.modes:
            raise ValueError(f"{type(self).__name__}(precision={precision!r}) is not supported; choose one of "
                             f"{', '.join(map(repr, self.modes))}")
        self.precision = precision
        self._scaler = scaler
        self._plugin = for_mode(precision, "cuda", scaler)

    def bind(self, device: str) -> None:
        """Run on devices of kind ``device`` (the Trainer's accelerator), which decides what autocast runs on."""
        self._plugin = for_mode(self.precision, device, self._scaler)

    # The step reads these three attributes directly (a plain plugin keeps them as class attributes).
    @property  # type: ignore[override]
    @override
    def dtype(self) -> Optional[torch.dtype]:
        return self._plugin.dtype

    @property  # type: ignore[override]
    @override
    def scaler(self) -> Optional[torch.amp.GradScaler]:
        return self._plugin.scaler

    @property  # type: ignore[override]
    @override
    def autocast(self) -> Optional[Callable[[], contextlib.AbstractContextManager[Any]]]:
        return self._plugin.autocast

    @property
    @override
    def compute_dtype(self) -> torch.dtype:
        return self._plugin.compute_dtype

    @override
    def forward_context(self) -> contextlib.AbstractContextManager[Any]:
        return self._plugin.forward_context()

    @override
    def convert_module(self, module: torch.nn.Module) -> torch.nn.Module:
        return self._plugin.convert_module(module)

    @override
    def convert_input(self, batch: Any) -> Any:
        return self._plugin.convert_input(batch)

    @override
    def optimizer_step(self, optimizer: Any, closure: Optional[Callable[[], Any]] = None, **kwargs: Any) -> Any:
        return self._plugin.optimizer_step(optimizer, closure, **kwargs)

    @override
    def unscale_gradients(self, optimizer: Any) -> None:
        self._plugin.unscale_gradients(optimizer)

    @override
    def clip_gradients(self, optimizer: Any, clip_val: float, algorithm: str) -> None:
        self._plugin.clip_gradients(optimizer, clip_val, algorithm)

    @override
    def state_dict(self) -> dict[str, Any]:
        return self._plugin.state_dict()

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._plugin.load_state_dict(state_dict)

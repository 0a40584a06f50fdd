"""Strategies: how the module and its data are placed on the devices of a run.

``from fulmen.strategies import DDPStrategy`` works as in Lightning; the multi-process strategies are imported on
first use, so that ``import fulmen`` does not load torch.distributed's parallel modules.
"""

from typing import TYPE_CHECKING, Any

from fulmen.strategies.registry import StrategyRegistry
from fulmen.strategies.single_device import SingleDeviceStrategy
from fulmen.strategies.strategy import Strategy

if TYPE_CHECKING:  # the real classes for type checkers and editors; at run time each is imported on first use
    from fulmen.strategies.ddp import DDPStrategy
    from fulmen.strategies.deepspeed import DeepSpeedStrategy
    from fulmen.strategies.fsdp import FSDPStrategy
    from fulmen.strategies.parallel import ParallelStrategy
    from fulmen.strategies.single_xla import SingleDeviceXLAStrategy

_LAZY = {
    "ParallelStrategy": "fulmen.strategies.parallel",
    "DDPStrategy": "fulmen.strategies.ddp",
    "FSDPStrategy": "fulmen.strategies.fsdp",
    "DeepSpeedStrategy": "fulmen.strategies.deepspeed",
    "SingleDeviceXLAStrategy": "fulmen.strategies.single_xla",
}

__all__ = ["SingleDeviceStrategy", "Strategy", "StrategyRegistry", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fulmen.strategies' has no attribute {name!r}")

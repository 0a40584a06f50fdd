"""The strategy for one device: the module runs there unwrapped."""

from __future__ import annotations

from typing import Any, Optional

import torch
from typing_extensions import override

from fulmen.plugins.io.checkpoint_plugin import CheckpointIO
from fulmen.strategies.strategy import Strategy


class SingleDeviceStrategy(Strategy):
    """Run on one device (``root_device``): move the module there, and the batches."""

    strategy_name = "single_device"

    def __init__(self, device: torch.device | str = "cpu", checkpoint_io: Optional[CheckpointIO] = None) -> None:
        super().__init__(checkpoint_io)
        self._root_device = torch.device(device)
        self.num_nodes = 1

    @property
    @override
    def root_device(self) -> torch.device:
        return self._root_device

    @root_device.setter
    def root_device(self, device: torch.device) -> None:
        self._root_device = torch.device(device)

    @property
    @override
    def world_size(self) -> int:
        return 1

    @property
    @override
    def global_rank(self) -> int:
        return 0

    @override
    def setup_environment(self) -> None:
        """Nothing to start or join."""

    @override
    def setup_module(self, module: torch.nn.Module) -> torch.nn.Module:
        return module.to(self.root_device)

    @override
    def wrap_eval_step(self, module: torch.nn.Module, step: Any) -> Any:
        """The validation/test/predict step as the loops call it: the module's own."""
        return step

    @override
    def reduce(self, tensor: torch.Tensor, reduce_op: Any = "mean") -> torch.Tensor:
        return tensor

    @override
    def barrier(self, name: str | None = None) -> None:
        """Nothing to wait for on one process."""

    @override
    def broadcast(self, obj: Any, src: int = 0) -> Any:
        return obj

    @override
    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        return decision

    def __repr__(self) -> str:
        return f"SingleDeviceStrategy(device={self.root_device})"

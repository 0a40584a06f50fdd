"""The strategy for one device: the module runs there unwrapped."""

from __future__ import annotations

from typing import Any, Optional

import torch

from fulmen.plugins.io.checkpoint_plugin import CheckpointIO
from fulmen.strategies.strategy import Strategy


class SingleDeviceStrategy(Strategy):
    """Run on one device (``root_device``): move the module there, and the batches."""

    strategy_name = "single_device"

    def __init__(self, device: torch.device | str = "cpu", checkpoint_io: Optional[CheckpointIO] = None) -> None:
        super().__init__(checkpoint_io)
        self._root_device = torch.device(device)
        self.local_rank = 0
        self.node_rank = 0
        self.num_nodes = 1

    @property
    def root_device(self) -> torch.device:
        return self._root_device

    @root_device.setter
    def root_device(self, device: torch.device) -> None:
        self._root_device = torch.device(device)

    @property
    def world_size(self) -> int:
        return 1

    @property
    def global_rank(self) -> int:
        return 0

    @property
    def distributed_sampler_kwargs(self) -> None:
        """No sampler to split the data: one process reads all of it."""
        return None

    def setup_environment(self) -> None:
        """Nothing to start or join."""

    def setup_module(self, module: torch.nn.Module) -> torch.nn.Module:
        return module.to(self.root_device)

    def wrap_training_step(self, trainer: Any, module: torch.nn.Module, step: Any) -> Any:
        """The training step as the loops call it: the module's own."""
        return step

    def wrap_eval_step(self, module: torch.nn.Module, step: Any) -> Any:
        """The validation/test/predict step as the loops call it: the module's own."""
        return step

    def reduce(self, tensor: torch.Tensor, reduce_op: Any = "mean") -> torch.Tensor:
        return tensor

    def all_gather(self, tensor: torch.Tensor, sync_grads: bool = False) -> torch.Tensor:
        return tensor

    def all_gather_object(self, obj: Any) -> list[Any]:
        return [obj]

    def module_state_dict(self, module: torch.nn.Module) -> dict[str, Any]:
        """The weights to save: the module's own state dict on one device."""
        return module.state_dict()

    def optimizer_state(self, module: torch.nn.Module, optimizer: Any) -> dict[str, Any]:
        return optimizer.state_dict()

    def load_module_state_dict(self, module: torch.nn.Module, state: dict[str, Any], strict: bool) -> Any:
        return module.load_state_dict(state, strict=strict)

    def load_optimizer_state(self, module: torch.nn.Module, optimizer: Any, state: dict[str, Any]) -> None:
        load_optimizer_state(module, optimizer, state)

    def barrier(self, name: str | None = None) -> None:
        """Nothing to wait for on one process."""

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        return obj

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        return decision

    def __repr__(self) -> str:
        return f"SingleDeviceStrategy(device={self.root_device})"


def load_optimizer_state(module: torch.nn.Module, optimizer: Any, state: dict[str, Any],
                         by_name: bool = False) -> None:
    """Load an optimizer state saved by ``optimizer.state_dict()`` (parameters by position), or one keyed by
    parameter names (as FSDP saves it; ``by_name`` when the module is sharded, which needs the names)."""
    by_name = by_name or any(isinstance(key, str) for key in state.get("state", {})) or any(
        isinstance(p, str) for group in state.get("param_groups", []) for p in group.get("params", []))
    if not by_name:
        optimizer.load_state_dict(state)
    elif not state.get("state"):
        # No per-parameter state (plain SGD): only the groups' settings, which torch's loader cannot take alone.
        for group, saved in zip(optimizer.param_groups, state.get("param_groups", [])):
            group.update({k: v for k, v in saved.items() if k != "params"})
    else:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(module, optimizer, state, options=StateDictOptions(full_state_dict=True))

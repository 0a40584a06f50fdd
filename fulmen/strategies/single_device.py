"""The strategy for one device: the module runs there unwrapped."""

from __future__ import annotations

from typing import Any

import torch


class SingleDeviceStrategy:
    """Run on one device (``root_device``): move the module there, and the batches."""

    strategy_name = "single_device"

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.root_device = torch.device(device)
        self.world_size = 1
        self.global_rank = 0
        self.local_rank = 0
        self.node_rank = 0
        self.num_nodes = 1
        # Trainer(sync_batchnorm=...): the multi-process strategies convert batch norm to SyncBatchNorm; with one
        # process there is nothing to synchronise, so it has no effect here.
        self.sync_batchnorm = False

    @property
    def is_global_zero(self) -> bool:
        return True

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

    def reduce(self, tensor: torch.Tensor, reduce_op: Any = "mean") -> torch.Tensor:
        return tensor

    def all_gather(self, tensor: torch.Tensor, sync_grads: bool = False) -> torch.Tensor:
        return tensor

    def all_gather_object(self, obj: Any) -> list[Any]:
        return [obj]

    def module_state_dict(self, module: torch.nn.Module) -> dict[str, Any]:
        """The weights to save: the module's own state dict on one device."""
        return module.state_dict()

    def barrier(self, name: str | None = None) -> None:
        """Nothing to wait for on one process."""

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        return obj

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        return decision

    def teardown(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return f"SingleDeviceStrategy(device={self.root_device})"

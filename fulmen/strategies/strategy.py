"""Strategy: the interface every strategy keeps, and the part they share (the checkpoint IO).

A strategy decides where the module and its data live and how the processes of a run talk: ``SingleDeviceStrategy``
(one device), and ``ParallelStrategy``'s subclasses (DDP, FSDP, DeepSpeed: one process per device).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, Optional, Union

import torch

from fulmen.plugins.io.checkpoint_plugin import _PATH, CheckpointIO
from fulmen.plugins.layer_sync import LayerSync


class Strategy(ABC):
    """What the Trainer and the loops ask of a strategy. Checkpoint files go through ``checkpoint_io`` (a
    ``TorchCheckpointIO`` unless ``Trainer(plugins=[...])`` or the strategy's argument gives another)."""

    strategy_name = "strategy"
    allows_inference_mode = True  # Trainer(inference_mode=True) applies to validate, test and predict

    def __init__(self, checkpoint_io: Optional[CheckpointIO] = None) -> None:
        self._checkpoint_io = checkpoint_io
        # Layers to synchronise across processes (Trainer(sync_batchnorm=True) sets TorchSyncBatchNorm); the
        # multi-process strategies apply it to the module; with one process there is nothing to synchronise.
        self.layer_sync: Optional[LayerSync] = None

    @property
    def checkpoint_io(self) -> CheckpointIO:
        """How this strategy writes, reads and deletes checkpoint files."""
        if self._checkpoint_io is None:
            from fulmen.plugins.io.torch_plugin import TorchCheckpointIO

            self._checkpoint_io = TorchCheckpointIO()
        return self._checkpoint_io

    @checkpoint_io.setter
    def checkpoint_io(self, io: CheckpointIO) -> None:
        self._checkpoint_io = io

    # ------------------------------------------------------------------------------------------ where it runs
    @property
    @abstractmethod
    def root_device(self) -> torch.device:
        """The device of this process."""

    @property
    @abstractmethod
    def world_size(self) -> int:
        """How many processes the run has."""

    @property
    @abstractmethod
    def global_rank(self) -> int:
        """This process's index among all of them."""

    @property
    def is_global_zero(self) -> bool:
        return self.global_rank == 0

    @abstractmethod
    def setup_environment(self) -> None:
        """Start or join the other processes of the run (nothing, on one device)."""

    @abstractmethod
    def setup_module(self, module: torch.nn.Module) -> torch.nn.Module:
        """Put the module on the device (and wrap it) for a run; returns the module the run uses."""

    @abstractmethod
    def wrap_eval_step(self, module: torch.nn.Module, step: Callable[..., Any]) -> Callable[..., Any]:
        """The validation/test/predict step as the loops call it."""

    # ------------------------------------------------------------------------------------------ collectives
    @abstractmethod
    def barrier(self, name: Optional[str] = None) -> None:
        """Wait until every process gets here."""

    @abstractmethod
    def broadcast(self, obj: Any, src: int = 0) -> Any:
        """``obj`` of process ``src``, on every process."""

    @abstractmethod
    def reduce(self, tensor: torch.Tensor, reduce_op: Union[str, Any] = "mean") -> torch.Tensor:
        """``tensor`` reduced over the processes ("mean", "sum", "max", "min")."""

    @abstractmethod
    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        """Whether every process (``all``) or any process decided True."""

    # ------------------------------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, checkpoint: dict[str, Any], filepath: _PATH,
                        storage_options: Optional[Any] = None) -> None:
        """Rank 0 writes ``checkpoint`` through ``checkpoint_io``; the others wait for it."""
        if self.is_global_zero:
            self.checkpoint_io.save_checkpoint(checkpoint, filepath, storage_options)
        self.barrier("save_checkpoint")

    def load_checkpoint(self, checkpoint_path: _PATH, weights_only: Optional[bool] = None) -> dict[str, Any]:
        """The checkpoint at ``checkpoint_path``, read through ``checkpoint_io`` (plain data only unless
        ``weights_only=False``)."""
        return self.checkpoint_io.load_checkpoint(checkpoint_path, weights_only=weights_only)

    def remove_checkpoint(self, filepath: _PATH) -> None:
        """Rank 0 deletes the checkpoint at ``filepath``."""
        if self.is_global_zero:
            self.checkpoint_io.remove_checkpoint(filepath)

    def teardown(self) -> None:
        """The run ends: the checkpoint IO finishes what it writes (a failed background write raises here)."""
        if self._checkpoint_io is not None:
            self._checkpoint_io.teardown()

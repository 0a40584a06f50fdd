"""Strategy: the interface every strategy keeps, and the part they share (the checkpoint IO).

A strategy decides where the module and its data live and how the processes of a run talk: ``SingleDeviceStrategy``
(one device), and ``ParallelStrategy``'s subclasses (DDP, FSDP, DeepSpeed: one process per device).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

import torch

from fulmen.core.step import run_backward
from fulmen.plugins.io.checkpoint_plugin import _PATH, CheckpointIO
from fulmen.plugins.layer_sync import LayerSync

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer


class Strategy(ABC):
    """What the Trainer and the loops ask of a strategy. Checkpoint files go through ``checkpoint_io`` (a
    ``TorchCheckpointIO`` unless ``Trainer(plugins=[...])`` or the strategy's argument gives another)."""

    strategy_name = "strategy"
    allows_inference_mode = True  # Trainer(inference_mode=True) applies to validate, test and predict
    # A strategy whose engine runs the whole automatic step (DeepSpeed) sets its step function here; None: the loops'.
    automatic_step: Optional[Callable[..., Any]] = None
    # ``optimizer.step(closure)`` under manual optimization, when an engine steps the optimizer it wraps (DeepSpeed);
    # None: the optimizer steps itself.
    manual_optimizer_step: Optional[Callable[[Callable[[], Any]], Any]] = None
    # Whether an accumulation window's gradients live where a checkpoint cannot hold them (ZeRO's buffers): a
    # preemption inside a window then waits for its end.
    holds_window_gradients = False
    # Whether the engine clips the gradients in its own step (``self.clip_gradients`` is then refused).
    clips_gradients_itself = False
    # What starts the run's other processes (None: this strategy runs in one process, or joins processes started
    # outside, as torchrun's and SLURM's).
    launcher: Optional[Any] = None

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

    # ------------------------------------------------------------------------------------------ configuration
    def check_precision(self, precision: str) -> None:
        """Refuse (with the fix) a precision this strategy cannot run; every precision is fine by default."""

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

    @property
    def local_rank(self) -> int:
        """This process's index among the processes of its machine."""
        return 0

    @property
    def node_rank(self) -> int:
        """This machine's index among the machines of the run."""
        return 0

    @property
    def distributed_sampler_kwargs(self) -> Optional[dict[str, int]]:
        """``num_replicas`` and ``rank`` for splitting the data between processes; None when one process reads all."""
        return None

    def wrap_training_step(self, trainer: "Trainer", module: torch.nn.Module,
                           step: Callable[..., Any]) -> Callable[..., Any]:
        """The module's ``training_step`` as the loops call it (through DDP's forward, an engine, ...)."""
        return step

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

    def all_gather(self, tensor: torch.Tensor, sync_grads: bool = False) -> torch.Tensor:
        """``tensor`` of every process, stacked along a new first dimension (itself, with one process)."""
        return tensor

    def all_gather_object(self, obj: Any) -> list[Any]:
        """``obj`` of every process, in rank order."""
        return [obj]

    def start_max(self, value: int) -> Callable[[], int]:
        """Begin a maximum of ``value`` over the processes without waiting; the returned function gives it."""
        return lambda: value

    # ------------------------------------------------------------------------------------------ the step
    def manual_backward(self, trainer: "Trainer", loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        """``self.manual_backward(loss)``: the backward hooks around the backward of the (scaled) loss."""
        run_backward(trainer, loss, *args, **kwargs)

    # ------------------------------------------------------------------------------------------ checkpoints
    def module_state_dict(self, module: torch.nn.Module) -> dict[str, Any]:
        """The module's whole state dict, as a checkpoint holds it."""
        return module.state_dict()

    def optimizer_state(self, module: torch.nn.Module, optimizer: Any) -> dict[str, Any]:
        """``optimizer``'s state, as a checkpoint holds it."""
        return optimizer.state_dict()

    def load_module_state_dict(self, module: torch.nn.Module, state: dict[str, Any], strict: bool) -> Any:
        """Load a checkpoint's state dict into the module; returns the missing and unexpected keys."""
        return module.load_state_dict(state, strict=strict)

    def load_optimizer_state(self, module: torch.nn.Module, optimizer: Any, state: dict[str, Any]) -> None:
        """Load a checkpoint's optimizer state into ``optimizer`` (saved by position, or by parameter name as FSDP
        saves it)."""
        load_optimizer_state(module, optimizer, state)

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

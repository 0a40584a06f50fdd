"""FSDPStrategy: parameters, gradients and optimizer state sharded across processes with
``torch.distributed.fsdp.fully_shard`` (FSDP2); checkpoints whole (one file, written by rank 0) or sharded (a folder
written by every rank with ``torch.distributed.checkpoint``), and either loads on any number of processes."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

import torch
from torch import nn
from typing_extensions import override

from fulmen.strategies.ddp import StepRunner
from fulmen.plugins.environments import ClusterEnvironment
from fulmen.plugins.io.checkpoint_plugin import CheckpointIO
from fulmen.strategies.parallel import ParallelStrategy
from fulmen.strategies.strategy import load_optimizer_state
from fulmen.utilities.exceptions import MisconfigurationException

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer

SHARDING = {"FULL_SHARD": True, "SHARD_GRAD_OP": False}  # -> fully_shard(reshard_after_forward=...)


class FSDPStrategy(ParallelStrategy):
    """Fully sharded data parallel training, with Lightning's FSDPStrategy arguments mapped onto FSDP2.

    Args:
        cpu_offload: keep the sharded parameters (and their optimizer state) in CPU memory (``CPUOffloadPolicy``).
        mixed_precision: a ``torch.distributed.fsdp.MixedPrecisionPolicy`` (param_dtype, reduce_dtype, ...).
        auto_wrap_policy: which submodules become their own FSDP unit (sharded and gathered on their own): a set of
            module classes (such as ``{nn.TransformerEncoderLayer}``), or a function ``policy(module) -> bool``.
            The whole model is always one unit as well.
        activation_checkpointing_policy: module classes (or a function) whose activations are recomputed in
            backward instead of kept (``torch.utils.checkpoint``).
        sharding_strategy: "FULL_SHARD" (gather for forward and again for backward) or "SHARD_GRAD_OP" (keep the
            gathered parameters from forward to backward).
        state_dict_type: "full" (one checkpoint file, the whole state gathered on rank 0) or "sharded" (a folder:
            each rank writes its shards with torch.distributed.checkpoint, plus ``meta.ckpt``).
        parallel_devices: as for DDPStrategy.
        cluster_environment: as for DDPStrategy.
        process_group_backend: as for DDPStrategy.
        timeout: as for DDPStrategy.
        accelerator: accepted for Lightning's signature.
        checkpoint_io: how checkpoint files are written, read and deleted (default: atomic torch.save).
        precision: accepted for Lightning's signature.
    """

    strategy_name = "fsdp"

    def __init__(self, accelerator: Any = None, parallel_devices: Optional[list[torch.device]] = None,
                 cluster_environment: Optional[ClusterEnvironment] = None, checkpoint_io: Optional[CheckpointIO] = None,
                 precision: Any = None, process_group_backend: Optional[str] = None,
                 timeout: Optional[timedelta] = timedelta(minutes=30), cpu_offload: Any = None,
                 mixed_precision: Any = None, auto_wrap_policy: Any = None,
                 activation_checkpointing_policy: Any = None, sharding_strategy: str = "FULL_SHARD",
                 state_dict_type: str = "full", **kwargs: Any) -> None:
        if sharding_strategy not in SHARDING:
            raise ValueError(f"FSDPStrategy(sharding_strategy={sharding_strategy!r}): fulmen shards with FSDP2 and "
                             f"supports {sorted(SHARDING)}; for no sharding use strategy='ddp'")
        if state_dict_type not in ("full", "sharded"):
            raise ValueError(f"FSDPStrategy(state_dict_type={state_dict_type!r}) must be 'full' or 'sharded'")
        if kwargs:
            raise TypeError(f"FSDPStrategy got arguments it does not know: {sorted(kwargs)}")
        super().__init__(parallel_devices, cluster_environment, process_group_backend, timeout,
                         checkpoint_io)
        self.cpu_offload = bool(cpu_offload)
        self.mixed_precision = mixed_precision
        self.auto_wrap_policy = auto_wrap_policy
        self.activation_checkpointing_policy = activation_checkpointing_policy
        self.sharding_strategy = sharding_strategy
        self.state_dict_type = state_dict_type
        self._runner: Optional[nn.Module] = None
        self._stager: Any = None  # torch.distributed.checkpoint's host copy of the shards, for background saves
        self._checkpoint_group: Any = None  # the process group of background saves, apart from the training's

    # ------------------------------------------------------------------------------------------ the module
    @override
    def setup_module(self, module: nn.Module) -> nn.Module:
        """Shard the module: its units (``auto_wrap_policy``), then the whole, under a runner that routes every step
        through a forward, where FSDP gathers the parameters."""
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import CPUOffloadPolicy, fully_shard

        module = module.to(self.root_device)
        if self.activation_checkpointing_policy:
            _checkpoint_activations(module, self.activation_checkpointing_policy)
        mesh = init_device_mesh(self.root_device.type, (self.world_size,))
        options: dict[str, Any] = {"mesh": mesh, "reshard_after_forward": SHARDING[self.sharding_strategy]}
        if self.cpu_offload:
            options["offload_policy"] = CPUOffloadPolicy()
        if self.mixed_precision is not None:
            options["mp_policy"] = self.mixed_precision
        for sub in reversed(list(module.modules())):  # innermost first, as FSDP wants
            if sub is not module and _wraps(self.auto_wrap_policy, sub):
                fully_shard(sub, **options)
        self._runner = fully_shard(StepRunner(module, module.training_step), **options)
        return module

    @override
    def wrap_training_step(self, trainer: "Trainer", module: nn.Module, step: Callable[..., Any]) -> Callable[..., Any]:
        self.model = self._runner
        return self._through_runner(step)

    @override
    def wrap_eval_step(self, module: nn.Module, step: Callable[..., Any]) -> Callable[..., Any]:
        return step if self._runner is None else self._through_runner(step)

    def _through_runner(self, step: Callable[..., Any]) -> Callable[..., Any]:
        runner = self._runner
        assert runner is not None

        def sharded_step(*args: Any) -> Any:
            # The runner serves every stage: point it at this stage's step, then call it, so that FSDP's forward
            # hooks gather the parameters around the step.
            object.__setattr__(runner, "step", step)
            return runner(*args)

        return sharded_step

    # ------------------------------------------------------------------------------------------ checkpoints
    def _options(self, full: bool) -> Any:
        from torch.distributed.checkpoint.state_dict import StateDictOptions

        return StateDictOptions(full_state_dict=full, cpu_offload=full)

    @override
    def module_state_dict(self, module: nn.Module) -> dict[str, Any]:
        """The weights: gathered whole on rank 0 ("full"; the others get {}), or each rank's shards ("sharded")."""
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        return get_model_state_dict(module, options=self._options(self.state_dict_type == "full"))

    @override
    def optimizer_state(self, module: nn.Module, optimizer: Any) -> dict[str, Any]:
        """The optimizer state keyed by parameter names: whole on rank 0, or sharded, as the weights."""
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        return get_optimizer_state_dict(module, optimizer, options=self._options(self.state_dict_type == "full"))

    @override
    def load_module_state_dict(self, module: nn.Module, state: dict[str, Any], strict: bool) -> Any:
        """Whole weights into the sharded module (each rank keeps its shard)."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        return set_model_state_dict(module, state, options=StateDictOptions(full_state_dict=True, strict=strict))

    @override
    def load_optimizer_state(self, module: nn.Module, optimizer: Any, state: dict[str, Any]) -> None:
        load_optimizer_state(module, optimizer, state, by_name=True)

    @override
    def save_checkpoint(self, checkpoint: dict[str, Any], filepath: Union[str, os.PathLike[str]],
                        storage_options: Any = None) -> None:
        """"full": rank 0 writes one file, through the checkpoint IO. "sharded": every rank writes its shards into a
        new folder, rank 0 adds ``meta.ckpt``, and the folder replaces ``filepath`` only when complete."""
        if self.state_dict_type == "full":
            super().save_checkpoint(checkpoint, filepath, storage_options)
            return
        import torch.distributed.checkpoint as dcp

        tensors = {"state_dict": checkpoint["state_dict"], "optimizer_states": checkpoint.get("optimizer_states", [])}
        meta = {k: v for k, v in checkpoint.items() if k not in tensors}
        writer = self.checkpoint_io
        if not writer.in_background:
            self.save_folder(filepath, meta, lambda folder: dcp.save(tensors, checkpoint_id=folder))
            return
        self._save_in_background(tensors, meta, os.fspath(filepath))

    def _save_in_background(self, tensors: dict[str, Any], meta: dict[str, Any], target: str) -> None:
        """The sharded save with ``AsyncCheckpointIO``: each rank copies its shards to host memory (the loop waits
        for that only), then its writer thread writes them into a new folder with ``torch.distributed.checkpoint``
        over a process group of its own; rank 0 adds ``meta.ckpt`` and puts the folder in place once every rank's
        shards are written, and the writers leave together, so that a wait on any rank means the folder is in
        place."""
        import torch.distributed as dist
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.staging import DefaultStager, StagingOptions

        from fulmen.checkpoint import io

        writer = self.checkpoint_io
        writer.wait()  # the stager's buffers hold the snapshot being written until then
        if self._stager is None:
            # Synchronous copies into buffers the stager keeps between saves (pinned for a GPU's tensors): one
            # snapshot's worth of host memory for the whole run.
            pinned = self.root_device.type == "cuda"
            self._stager = DefaultStager(StagingOptions(use_pinned_memory=pinned, use_shared_memory=False,
                                                        use_async_staging=False, use_non_blocking_copy=False))
        if self._checkpoint_group is None:
            # The writer threads' collectives must not interleave with the training's on the same group.
            self._checkpoint_group = dist.new_group(backend="gloo")
        staged = self._stager.stage(tensors)
        staging = self.staging_folder(target)
        group, first = self._checkpoint_group, self.is_global_zero

        def write(meta_snapshot: dict[str, Any]) -> None:
            dcp.save(staged, checkpoint_id=staging, process_group=group)  # raises on every rank if one fails
            try:
                if first:
                    io.publish_folder(staging, meta_snapshot, target)
            finally:
                dist.barrier(group=group)

        writer.start_write(meta if first else {}, target, write)  # (only rank 0 writes meta.ckpt)

    @override
    def teardown(self) -> None:
        try:
            super().teardown()  # waits for a background save in flight
        finally:
            if self._stager is not None:
                self._stager.close()  # the snapshot's host memory goes back
                self._stager = None

    @override
    def configure(self, accelerator: str, device_ids: list[int], num_nodes: int) -> None:
        if accelerator == "mps":
            raise MisconfigurationException("FSDPStrategy cannot shard on Apple's MPS devices (torch.distributed has no "
                                            "MPS backend); use accelerator='cpu' or a CUDA machine")
        super().configure(accelerator, device_ids, num_nodes)

    @override
    def check_precision(self, precision: str) -> None:
        """FSDP runs the float32, bfloat16 and float64 modes; float16 with loss scaling needs a sharded GradScaler."""
        if precision == "16-mixed":
            raise MisconfigurationException("FSDPStrategy with precision='16-mixed' is not supported (its GradScaler "
                                            "would need the sharded gradients); use precision='bf16-mixed'")

    def __repr__(self) -> str:
        return f"FSDPStrategy(devices={self.num_processes}, num_nodes={self.num_nodes})"


def _wraps(policy: Any, module: nn.Module) -> bool:
    if policy is None:
        return False
    if isinstance(policy, (set, list, tuple)):
        return isinstance(module, tuple(policy))
    if callable(policy):
        return bool(policy(module))
    raise TypeError(f"FSDPStrategy(auto_wrap_policy={policy!r}) must be a set of module classes or a function "
                    "policy(module) -> bool")


def _checkpoint_activations(module: nn.Module, policy: Any) -> None:
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import apply_activation_checkpointing

    apply_activation_checkpointing(module, check_fn=lambda sub: _wraps(policy, sub))

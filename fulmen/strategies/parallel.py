"""What the multi-process strategies share: the cluster environment and ranks, starting or joining the processes,
the process group, and the collectives (``barrier``, ``broadcast``, ``reduce``, ``all_gather``, ...). DDPStrategy and
FSDPStrategy add how the module is wrapped and saved."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any, Callable, Optional, Union

import torch
import torch.distributed as dist
from torch import nn
from typing_extensions import override

from fulmen.plugins.environments import ClusterEnvironment, LightningEnvironment, detect
from fulmen.plugins.io.checkpoint_plugin import CheckpointIO
from fulmen.strategies.launchers.subprocess_script import SubprocessLauncher
from fulmen.strategies.strategy import Strategy
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_info, rank_zero_only


class ParallelStrategy(Strategy):
    """One process per device, in a torch.distributed process group (gloo on the CPU, nccl on CUDA)."""

    strategy_name = "parallel"

    def __init__(self, parallel_devices: Optional[list[torch.device]] = None,
                 cluster_environment: Optional[ClusterEnvironment] = None, process_group_backend: Optional[str] = None,
                 timeout: Optional[timedelta] = timedelta(minutes=30),
                 checkpoint_io: Optional[CheckpointIO] = None) -> None:
        super().__init__(checkpoint_io)
        self.cluster_environment = cluster_environment
        self.parallel_devices = parallel_devices
        self.process_group_backend = process_group_backend
        self.timeout = timeout
        self.num_nodes = 1
        self.num_processes = 1
        self.launcher: Optional[SubprocessLauncher] = None
        self.model: Optional[nn.Module] = None  # the wrapper (DDP, FSDP runner) during a run
        self._accelerator_name = "cpu"

    # ------------------------------------------------------------------------------------------ configuration
    def configure(self, accelerator: str, device_ids: list[int], num_nodes: int) -> None:
        """Called by the Trainer with the resolved accelerator, this node's device indices and the node count."""
        self._accelerator_name = accelerator
        self.num_nodes = num_nodes
        if self.parallel_devices is None:
            self.parallel_devices = ([torch.device("cpu")] * len(device_ids) if accelerator == "cpu"
                                     else [torch.device(accelerator, i) for i in device_ids])
        self.num_processes = len(self.parallel_devices)
        if self.cluster_environment is None:
            self.cluster_environment = detect()
        env = self.cluster_environment
        env.validate_settings(self.num_processes, num_nodes)
        if not env.creates_processes_externally and not isinstance(env, LightningEnvironment):
            raise MisconfigurationException(f"{type(env).__name__} must run with processes started outside fulmen")
        env.set_world_size(self.num_processes * num_nodes)
        env.set_global_rank(env.node_rank() * self.num_processes + env.local_rank())
        rank_zero_only.rank = env.global_rank()  # type: ignore[attr-defined]
        self.launcher = SubprocessLauncher(env, self.num_processes, num_nodes)

    @property
    @override
    def root_device(self) -> torch.device:
        assert self.parallel_devices is not None, "DDPStrategy is configured by the Trainer"
        return self.parallel_devices[self.local_rank]

    @property
    @override
    def world_size(self) -> int:
        return self.cluster_environment.world_size() if self.cluster_environment else 1

    @property
    @override
    def global_rank(self) -> int:
        return self.cluster_environment.global_rank() if self.cluster_environment else 0

    @property
    @override
    def local_rank(self) -> int:
        return self.cluster_environment.local_rank() if self.cluster_environment else 0

    @property
    @override
    def node_rank(self) -> int:
        return self.cluster_environment.node_rank() if self.cluster_environment else 0

    @property
    @override
    def is_global_zero(self) -> bool:
        return self.global_rank == 0

    @property
    @override
    def distributed_sampler_kwargs(self) -> dict[str, int]:
        return {"num_replicas": self.world_size, "rank": self.global_rank}

    # ------------------------------------------------------------------------------------------ processes
    @override
    def setup_environment(self) -> None:
        """Start the other processes (the first time, when fulmen launches them) and join the process group."""
        assert self.launcher is not None and self.cluster_environment is not None
        if not self.launcher.procs and not self.cluster_environment.creates_processes_externally:
            self.launcher.launch(lambda: None)
        if dist.is_initialized():
            return
        env = self.cluster_environment
        backend = self.process_group_backend or ("nccl" if self._accelerator_name == "cuda" else "gloo")
        self.process_group_backend = backend
        if self._accelerator_name == "cuda":
            torch.cuda.set_device(self.root_device)
        rank_zero_info(f"Initializing distributed: GLOBAL_RANK: {self.global_rank}, MEMBER: {self.global_rank + 1}/"
                       f"{self.world_size}")
        dist.init_process_group(backend, init_method=f"tcp://{env.main_address}:{env.main_port}",
                                world_size=self.world_size, rank=self.global_rank, timeout=self.timeout)

    def save_folder(self, filepath: Any, meta: dict[str, Any], write: Callable[[str], None]) -> None:
        """Write a checkpoint folder atomically: every rank calls ``write(folder)`` on a new folder, rank 0 adds
        ``meta.ckpt`` (``meta``), and the folder replaces ``filepath`` only once complete."""
        from fulmen.checkpoint import io

        target = os.fspath(filepath)
        staging = self.staging_folder(target)
        write(staging)
        if self.is_global_zero:
            io.publish_folder(staging, meta, target)
        self.barrier()

    def staging_folder(self, target: str) -> str:
        """A new folder's name beside ``target``, the same on every rank (each writes its part into it)."""
        from fulmen.checkpoint import io

        return self.broadcast(io.staging_folder(target) if self.is_global_zero else None)

    @override
    def wrap_eval_step(self, module: nn.Module, step: Callable[..., Any]) -> Callable[..., Any]:
        """The function the eval loops call as validation/test/predict step: the module's own."""
        return step

    @override
    def teardown(self) -> None:
        """Drop the wrapper; the process group stays for the Trainer's next run."""
        self.model = None
        super().teardown()

    # ------------------------------------------------------------------------------------------ collectives
    @override
    def barrier(self, name: Optional[str] = None) -> None:
        if dist.is_initialized():
            if self.process_group_backend == "nccl":
                dist.barrier(device_ids=[self.root_device.index])
            else:
                dist.barrier()

    @override
    def broadcast(self, obj: Any, src: int = 0) -> Any:
        if not dist.is_initialized():
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=src)
        return box[0]

    @override
    def reduce(self, tensor: torch.Tensor, reduce_op: Union[str, Any] = "mean") -> torch.Tensor:
        """All-reduce ``tensor`` (a copy): "mean", "sum", "max" or "min"."""
        if not dist.is_initialized():
            return tensor
        op = {"mean": dist.ReduceOp.SUM, "sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX,
              "min": dist.ReduceOp.MIN}.get(reduce_op, reduce_op) if isinstance(reduce_op, str) else reduce_op
        out = tensor.clone()
        dist.all_reduce(out, op=op)
        return out / self.world_size if reduce_op == "mean" else out

    @override
    def all_gather_object(self, obj: Any) -> list[Any]:
        """``obj`` from every process, in rank order (pickled: for checkpoint-time state, not for the step)."""
        if not dist.is_initialized():
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    @override
    def all_gather(self, tensor: torch.Tensor, sync_grads: bool = False) -> torch.Tensor:
        """``tensor`` from every process, stacked on a new first dimension (with gradients when ``sync_grads``)."""
        if not dist.is_initialized():
            return tensor.unsqueeze(0)
        if sync_grads:
            return torch.stack(dist.nn.functional.all_gather(tensor.contiguous()))
        out = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(out, tensor.contiguous())
        return torch.stack(out)

    @override
    def start_max(self, value: int) -> Callable[[], int]:
        """Begin an all-reduce (max) of ``value`` without waiting for it; the returned function waits and gives
        the result. Collectives run in the same order on every rank, so ranks must start these at the same
        points."""
        device = self.root_device if self.process_group_backend == "nccl" else torch.device("cpu")
        flag = torch.tensor([value], dtype=torch.int64, device=device)
        work = dist.all_reduce(flag, op=dist.ReduceOp.MAX, async_op=True)

        def result() -> int:
            work.wait()
            return int(flag.item())

        return result

    @override
    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        """True when every process decided so (``all``), or any did."""
        if not dist.is_initialized():
            return decision
        flag = torch.tensor(int(bool(decision)), device=self.root_device if self.process_group_backend == "nccl"
                            else "cpu")
        dist.all_reduce(flag, op=dist.ReduceOp.SUM)
        return bool(flag == self.world_size) if all else bool(flag > 0)


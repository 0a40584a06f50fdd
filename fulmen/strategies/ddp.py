"""DDPStrategy: one process per device, the module wrapped in ``torch.nn.parallel.DistributedDataParallel``, which
averages the gradients across processes during backward. gloo on the CPU, nccl on CUDA; nothing home-made."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Callable, Optional, Union

import torch
import torch.distributed as dist
from torch import nn

from fulmen.strategies.environments import ClusterEnvironment, LightningEnvironment, detect
from fulmen.strategies.launcher import SubprocessLauncher
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_info, rank_zero_only

START_METHODS = ("popen", "spawn", "fork", "forkserver")


class _StepRunner(nn.Module):
    """What DistributedDataParallel wraps: its forward is the LightningModule's training_step, so that the module
    runs through DDP's forward (which prepares the gradient reduction) while hooks and logging stay the module's."""

    def __init__(self, module: nn.Module, step: Callable[[Any, int], Any]) -> None:
        super().__init__()
        self.module = module
        object.__setattr__(self, "step", step)  # not a submodule

    def forward(self, batch: Any, batch_idx: int) -> Any:
        return self.step(batch, batch_idx)


class DDPStrategy:
    """Distributed data parallel training, as Lightning's DDPStrategy.

    Args:
        accelerator, parallel_devices, checkpoint_io, precision_plugin: accepted for Lightning's signature; the
            Trainer's accelerator, devices and precision are used.
        cluster_environment: where ranks come from (default: detected; torchrun, SLURM, or fulmen's launcher).
        process_group_backend: "gloo" (CPU default), "nccl" (CUDA default) or another torch.distributed backend.
        timeout: how long a collective waits for the other processes before failing.
        start_method: "popen" (re-run this command for each process, as torchrun does); "spawn", "fork" and
            "forkserver" start them with torch.multiprocessing.
        **kwargs: passed to DistributedDataParallel (find_unused_parameters, static_graph,
            gradient_as_bucket_view, bucket_cap_mb, broadcast_buffers, ...).
    """

    strategy_name = "ddp"

    def __init__(self, accelerator: Any = None, parallel_devices: Optional[list[torch.device]] = None,
                 cluster_environment: Optional[ClusterEnvironment] = None, checkpoint_io: Any = None,
                 precision_plugin: Any = None, process_group_backend: Optional[str] = None,
                 timeout: Optional[timedelta] = timedelta(minutes=30), start_method: str = "popen",
                 **kwargs: Any) -> None:
        if start_method not in START_METHODS:
            raise ValueError(f"DDPStrategy(start_method={start_method!r}) must be one of {START_METHODS}")
        if start_method != "popen":
            raise MisconfigurationException(
                f"DDPStrategy(start_method={start_method!r}) is not supported yet; use strategy='ddp' (start_method="
                "'popen'), or start the processes with torchrun")
        self.cluster_environment = cluster_environment
        self.parallel_devices = parallel_devices
        self.process_group_backend = process_group_backend
        self.timeout = timeout
        self.start_method = start_method
        self.ddp_kwargs = kwargs
        self.sync_batchnorm = False
        self.num_nodes = 1
        self.num_processes = 1
        self.launcher: Optional[SubprocessLauncher] = None
        self.model: Optional[nn.Module] = None  # the DDP wrapper during a fit
        self._accelerator_name = "cpu"
        self._configured = False

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
        self._configured = True

    @property
    def root_device(self) -> torch.device:
        assert self.parallel_devices is not None, "DDPStrategy is configured by the Trainer"
        return self.parallel_devices[self.local_rank]

    @property
    def world_size(self) -> int:
        return self.cluster_environment.world_size() if self.cluster_environment else 1

    @property
    def global_rank(self) -> int:
        return self.cluster_environment.global_rank() if self.cluster_environment else 0

    @property
    def local_rank(self) -> int:
        return self.cluster_environment.local_rank() if self.cluster_environment else 0

    @property
    def node_rank(self) -> int:
        return self.cluster_environment.node_rank() if self.cluster_environment else 0

    @property
    def is_global_zero(self) -> bool:
        return self.global_rank == 0

    @property
    def distributed_sampler_kwargs(self) -> dict[str, int]:
        return {"num_replicas": self.world_size, "rank": self.global_rank}

    # ------------------------------------------------------------------------------------------ processes
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

    # ------------------------------------------------------------------------------------------ the module
    def setup_module(self, module: nn.Module) -> nn.Module:
        """Move the module to this process's device (SyncBatchNorm first, with ``sync_batchnorm``)."""
        if self.sync_batchnorm:
            module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
        return module.to(self.root_device)

    def wrap_training_step(self, trainer: Any, module: nn.Module,
                           step: Callable[[Any, int], Any]) -> Callable[..., Any]:
        """The function the loops call as training_step: through DistributedDataParallel's forward. At the end of an
        accumulation window only: the batches before skip the gradient reduction (DDP's no_sync)."""
        device_ids = [self.root_device.index] if self.root_device.type == "cuda" else None
        ddp = nn.parallel.DistributedDataParallel(_StepRunner(module, step), device_ids=device_ids, **self.ddp_kwargs)
        self.model = ddp
        state = trainer.state

        def ddp_training_step(batch: Any, batch_idx: int) -> Any:
            # DDP reads this flag in forward to decide whether the coming backward reduces the gradients.
            accumulate = trainer.accumulate_grad_batches if module.automatic_optimization else 1
            ddp.require_backward_grad_sync = state.is_last_batch or (batch_idx + 1) % accumulate == 0
            try:
                return ddp(batch, batch_idx)
            except RuntimeError as err:
                if "find_unused_parameters" in str(err):  # DDP's own words for parameters without gradients
                    unused = [n for n, p in module.named_parameters() if p.requires_grad and p.grad is None]
                    raise MisconfigurationException(
                        f"DDP found parameters that got no gradient in the previous step ({unused[:5]}): pass "
                        "strategy='ddp_find_unused_parameters_true' (or DDPStrategy(find_unused_parameters=True)), "
                        "or freeze them (requires_grad=False)") from err
                raise

        return ddp_training_step

    def module_state_dict(self, module: nn.Module) -> dict[str, Any]:
        """The weights to save: the LightningModule's own (every rank holds the same)."""
        return module.state_dict()

    def teardown(self) -> None:
        """Drop the DDP wrapper; the process group stays for the Trainer's next run."""
        self.model = None

    # ------------------------------------------------------------------------------------------ collectives
    def barrier(self, name: Optional[str] = None) -> None:
        if dist.is_initialized():
            if self.process_group_backend == "nccl":
                dist.barrier(device_ids=[self.root_device.index])
            else:
                dist.barrier()

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        if not dist.is_initialized():
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=src)
        return box[0]

    def reduce(self, tensor: torch.Tensor, reduce_op: Union[str, Any] = "mean") -> torch.Tensor:
        """All-reduce ``tensor`` (a copy): "mean", "sum", "max" or "min"."""
        if not dist.is_initialized():
            return tensor
        op = {"mean": dist.ReduceOp.SUM, "sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX,
              "min": dist.ReduceOp.MIN}.get(reduce_op, reduce_op) if isinstance(reduce_op, str) else reduce_op
        out = tensor.clone()
        dist.all_reduce(out, op=op)
        return out / self.world_size if reduce_op == "mean" else out

    def all_gather_object(self, obj: Any) -> list[Any]:
        """``obj`` from every process, in rank order (pickled: for checkpoint-time state, not for the step)."""
        if not dist.is_initialized():
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def all_gather(self, tensor: torch.Tensor, sync_grads: bool = False) -> torch.Tensor:
        """``tensor`` from every process, stacked on a new first dimension (with gradients when ``sync_grads``)."""
        if not dist.is_initialized():
            return tensor.unsqueeze(0)
        if sync_grads:
            return torch.stack(dist.nn.functional.all_gather(tensor.contiguous()))
        out = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(out, tensor.contiguous())
        return torch.stack(out)

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

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        """True when every process decided so (``all``), or any did."""
        if not dist.is_initialized():
            return decision
        flag = torch.tensor(int(bool(decision)), device=self.root_device if self.process_group_backend == "nccl"
                            else "cpu")
        dist.all_reduce(flag, op=dist.ReduceOp.SUM)
        return bool(flag == self.world_size) if all else bool(flag > 0)

    def __repr__(self) -> str:
        return f"DDPStrategy(devices={self.num_processes}, num_nodes={self.num_nodes})"

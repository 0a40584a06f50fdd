"""DDPStrategy: one process per device, the module wrapped in ``torch.nn.parallel.DistributedDataParallel``, which
averages the gradients across processes during backward. gloo on the CPU, nccl on CUDA; nothing home-made."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, Callable, Optional

import torch
from torch import nn
from typing_extensions import override

from fulmen.plugins.environments import ClusterEnvironment
from fulmen.plugins.io.checkpoint_plugin import CheckpointIO
from fulmen.strategies.launchers.multiprocessing import SpawnLauncher
from fulmen.strategies.parallel import ParallelStrategy
from fulmen.utilities.exceptions import MisconfigurationException

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer

START_METHODS = ("popen", "spawn", "fork", "forkserver")


class StepRunner(nn.Module):
    """What DistributedDataParallel (or FSDP) wraps: its forward is one of the LightningModule's steps, so that the
    step runs through the wrapper's forward (which prepares the gradient reduction, or gathers the sharded
    parameters) while hooks and logging stay the module's."""

    def __init__(self, module: nn.Module, step: Callable[[Any, int], Any]) -> None:
        super().__init__()
        self.module = module
        object.__setattr__(self, "step", step)  # not a submodule

    @override
    def forward(self, *args: Any) -> Any:
        return self.step(*args)


class DDPStrategy(ParallelStrategy):
    """Distributed data parallel training, as Lightning's DDPStrategy.

    Args:
        accelerator: accepted for Lightning's signature; the Trainer's accelerator is used.
        parallel_devices: accepted for Lightning's signature; the Trainer's devices are used.
        checkpoint_io: how checkpoint files are written, read and deleted (default: atomic torch.save).
        precision_plugin: accepted for Lightning's signature; the Trainer's precision is used.
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
                 cluster_environment: Optional[ClusterEnvironment] = None, checkpoint_io: Optional[CheckpointIO] = None,
                 precision_plugin: Any = None, process_group_backend: Optional[str] = None,
                 timeout: Optional[timedelta] = timedelta(minutes=30), start_method: str = "popen",
                 **kwargs: Any) -> None:
        if start_method not in START_METHODS:
            raise ValueError(f"DDPStrategy(start_method={start_method!r}) must be one of {START_METHODS}")
        super().__init__(parallel_devices, cluster_environment, process_group_backend, timeout,
                         checkpoint_io)
        self.start_method = start_method
        self.ddp_kwargs = kwargs

    @override
    def configure(self, accelerator: str, device_ids: list[int], num_nodes: int) -> None:
        super().configure(accelerator, device_ids, num_nodes)
        if self.start_method != "popen":
            assert self.cluster_environment is not None
            if self.cluster_environment.creates_processes_externally:
                raise MisconfigurationException(
                    f"DDPStrategy(start_method={self.start_method!r}) starts its own processes, but they were started "
                    "outside fulmen (torchrun, SLURM); use strategy='ddp'")
            self.launcher = SpawnLauncher(self.cluster_environment, self.num_processes, num_nodes,
                                          self.start_method)
    # ------------------------------------------------------------------------------------------ the module
    @override
    def setup_module(self, module: nn.Module) -> nn.Module:
        """Move the module to this process's device (its layers synchronised first, with ``sync_batchnorm`` or a
        LayerSync plugin)."""
        if self.layer_sync is not None:
            module = self.layer_sync.apply(module)
        return module.to(self.root_device)

    @override
    def wrap_training_step(self, trainer: "Trainer", module: nn.Module,
                           step: Callable[[Any, int], Any]) -> Callable[..., Any]:
        """The function the loops call as training_step: through DistributedDataParallel's forward. At the end of an
        accumulation window only: the batches before skip the gradient reduction (DDP's no_sync)."""
        device_ids = [self.root_device.index] if self.root_device.type == "cuda" else None
        ddp = nn.parallel.DistributedDataParallel(StepRunner(module, step), device_ids=device_ids, **self.ddp_kwargs)
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

    def __repr__(self) -> str:
        return f"DDPStrategy(devices={self.num_processes}, num_nodes={self.num_nodes})"

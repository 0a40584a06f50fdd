"""Questions about batches and loaders: how many samples a batch holds, whether a loader has a length everywhere."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable, Mapping, Sized
from typing import TYPE_CHECKING, Any, Optional, Union

import torch

from fulmen.utilities.apply_to_collection import batch_size_of
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from fulmen.strategies.strategy import Strategy

# A batch: a tensor, a string, or a mapping or iterable of batches.
BType = Union[torch.Tensor, str, Mapping[Any, "BType"], Iterable["BType"]]


def extract_batch_size(batch: BType) -> int:
    """The number of samples in ``batch``: the first dimension of the first tensor found in it (walking
    sequences, mappings and dataclasses), as ``self.log`` infers it to weight epoch means."""
    try:
        return batch_size_of(batch)
    except ValueError:
        raise MisconfigurationException(
            "Could not find the batch size in the batch (it holds no tensor); pass it as "
            "self.log(..., batch_size=N)") from None


def has_len_all_ranks(dataloader: object, strategy: Any,
                      allow_zero_length_dataloader_with_multiple_devices: bool = False) -> bool:
    """Whether ``dataloader`` has a length (on this process; several processes must agree the data is not empty).

    A loader empty on this process while others have data raises, unless
    ``allow_zero_length_dataloader_with_multiple_devices``; empty everywhere only warns. Summing the lengths over
    the processes is a collective: every process must call this.
    """
    try:
        local = len(dataloader)  # type: ignore[arg-type]
    except (TypeError, NotImplementedError):
        return False
    total = int(strategy.reduce(torch.tensor(local, device=strategy.root_device), reduce_op="sum"))
    name = type(dataloader).__name__
    if total == 0:
        rank_zero_warn(f"The {name} is empty on every process; check that this is intended")
    elif local == 0:
        if not allow_zero_length_dataloader_with_multiple_devices:
            raise RuntimeError(f"The {name} of this process is empty while other processes have data; give every "
                               "process at least one batch, or set allow_zero_length_dataloader_with_multiple_devices"
                               " = True on the module or datamodule")
        rank_zero_warn(f"The {name} of this process is empty while others have data: the processes run different "
                       "numbers of batches")
    return isinstance(dataloader, Sized)


def suggested_max_num_workers(local_world_size: int) -> int:
    """An upper bound for a DataLoader's ``num_workers``: the CPU cores this process may use, shared among the
    ``local_world_size`` processes of this machine, less one for each process itself (at least 1)."""
    if local_world_size < 1:
        raise ValueError(f"suggested_max_num_workers(local_world_size={local_world_size}) must be >= 1")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // local_world_size - 1)


def is_shared_filesystem(strategy: "Strategy", path: Optional[Union[str, "os.PathLike[str]"]] = None,
                         timeout: int = 3) -> bool:
    """Whether every process of the run sees the same files at ``path`` (the working folder by default): rank 0
    writes a file there, and each process looks for it for up to ``timeout`` seconds. A collective: every process
    must call it. True on a single process."""
    if strategy.world_size == 1:
        return True
    folder = os.fspath(path) if path is not None else os.getcwd()
    name = strategy.broadcast(uuid.uuid4().hex if strategy.global_rank == 0 else None)
    probe = os.path.join(folder, f".fulmen-shared-{name}")
    if strategy.global_rank == 0:
        with open(probe, "w"):
            pass
    strategy.barrier("is_shared_filesystem")
    deadline = time.monotonic() + timeout
    seen = os.path.exists(probe)
    while not seen and time.monotonic() < deadline:
        time.sleep(0.05)
        seen = os.path.exists(probe)
    everywhere = int(strategy.reduce(torch.tensor(int(seen), device=strategy.root_device), reduce_op="sum"))
    strategy.barrier("is_shared_filesystem done")
    if strategy.global_rank == 0:
        os.remove(probe)
    return everywhere == strategy.world_size

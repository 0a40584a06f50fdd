"""Out-of-memory errors, and giving memory back."""

from __future__ import annotations

import gc
from typing import Any

import torch

from fulmen.utilities.apply_to_collection import apply_to_collection


def recursive_detach(in_dict: Any, to_cpu: bool = False) -> Any:
    """``in_dict`` (any collection) with every tensor detached, and moved to the CPU with ``to_cpu``."""

    def detach(t: torch.Tensor) -> torch.Tensor:
        t = t.detach()
        return t.cpu() if to_cpu else t

    return apply_to_collection(in_dict, torch.Tensor, detach)


def is_cuda_out_of_memory(exception: BaseException) -> bool:
    """Whether ``exception`` is CUDA (or MPS) running out of device memory."""
    if isinstance(exception, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exception, RuntimeError) and len(exception.args) == 1 and any(
        text in str(exception.args[0]) for text in ("CUDA out of memory", "CUDA error: out of memory",
                                                     "MPS backend out of memory"))


def is_cudnn_snafu(exception: BaseException) -> bool:
    """Whether ``exception`` is cuDNN refusing an input too large for its memory (which out of memory causes)."""
    return isinstance(exception, RuntimeError) and len(exception.args) == 1 and \
        "cuDNN error: CUDNN_STATUS_NOT_SUPPORTED" in str(exception.args[0])


def is_out_of_cpu_memory(exception: BaseException) -> bool:
    """Whether ``exception`` is the host running out of memory."""
    return isinstance(exception, RuntimeError) and len(exception.args) == 1 and \
        "DefaultCPUAllocator: can't allocate memory" in str(exception.args[0])


def is_oom_error(exception: BaseException) -> bool:
    """Whether ``exception`` says that the device or the host ran out of memory."""
    return is_cuda_out_of_memory(exception) or is_cudnn_snafu(exception) or is_out_of_cpu_memory(exception)


def garbage_collection_cuda() -> None:
    """Collect garbage, then give CUDA's cached blocks back to the device (nothing to give without CUDA)."""
    gc.collect()
    if torch.cuda.is_available():
        try:
            torch.cuda.empty_cache()
        except RuntimeError as err:
            if not is_oom_error(err):  # emptying the cache can itself run out of memory; that is not an error here
                raise

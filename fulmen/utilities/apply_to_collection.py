"""Walk nested lists, tuples, dicts and dataclasses, applying a function to the leaves of one type."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Callable

import torch


def apply_to_collection(data: Any, dtype: type | tuple[type, ...], function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Return ``data`` with every leaf of type ``dtype`` replaced by ``function(leaf, *args, **kwargs)``.

    The shape of the collection is kept: named tuples stay named tuples, dict subclasses keep their class,
    dataclass instances are copied with the mapped fields.
    """
    if isinstance(data, dtype):
        return function(data, *args, **kwargs)
    if isinstance(data, Mapping):
        return type(data)({k: apply_to_collection(v, dtype, function, *args, **kwargs) for k, v in data.items()})
    if isinstance(data, tuple) and hasattr(data, "_fields"):  # namedtuple
        return type(data)(*(apply_to_collection(v, dtype, function, *args, **kwargs) for v in data))
    if isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        return type(data)(apply_to_collection(v, dtype, function, *args, **kwargs) for v in data)
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        changes = {
            f.name: apply_to_collection(getattr(data, f.name), dtype, function, *args, **kwargs)
            for f in dataclasses.fields(data)
            if f.init
        }
        return dataclasses.replace(data, **changes)
    return data


def move_data_to_device(batch: Any, device: torch.device | str | int) -> Any:
    """Move every tensor (and every object with a ``.to`` method, such as a BatchEncoding) in ``batch`` to ``device``."""
    device = torch.device(device) if not isinstance(device, torch.device) else device
    # Asynchronous host-to-CUDA copies: from pinned memory (DataLoader(pin_memory=True)) the copy overlaps the
    # work already queued; from ordinary memory CUDA copies synchronously anyway. The MPS backend needs blocking
    # copies.
    non_blocking = device.type == "cuda"

    def to(t: Any) -> Any:
        if isinstance(t, torch.Tensor):
            return t.to(device, non_blocking=non_blocking)
        moved = t.to(device)
        return t if moved is None else moved  # some .to methods move in place and return None

    if isinstance(batch, torch.Tensor):
        return to(batch)
    return apply_to_collection(batch, _HasTo, to)


class _HasToMeta(type):
    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, torch.Tensor) or (callable(getattr(obj, "to", None)) and not isinstance(obj, type))


class _HasTo(metaclass=_HasToMeta):
    """Matches tensors and any object with a ``.to`` method."""


def batch_size_of(batch: Any) -> int:
    """The size of the first dimension of the first tensor found in ``batch`` (1 for a 0-dim tensor).

    Used to weight epoch means; raises ValueError when the batch holds no tensor, so the caller can say
    "pass batch_size to self.log".
    """
    if isinstance(batch, torch.Tensor):
        return 1 if batch.ndim == 0 else batch.size(0)
    if type(batch) in (tuple, list) and batch and isinstance(batch[0], torch.Tensor):
        # the usual (inputs, targets) batch, without the abstract-class checks below (this runs every batch)
        return 1 if batch[0].ndim == 0 else batch[0].size(0)
    if isinstance(batch, (str, bytes)):
        return len(batch)
    if isinstance(batch, Mapping):
        batch = list(batch.values())
    elif dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        batch = [getattr(batch, f.name) for f in dataclasses.fields(batch)]
    if isinstance(batch, Sequence):
        for item in batch:
            try:
                return batch_size_of(item)
            except ValueError:
                continue
    raise ValueError("no tensor found in the batch")

"""Plain data: what a checkpoint may hold, so that ``torch.load(weights_only=True)`` reads it back.

Two steps, on every save:

- ``to_plain`` converts what fulmen itself collects (hyperparameters, callback and datamodule states, optimizer and
  scheduler states, the resume record): numpy scalars become Python numbers and numpy arrays tensors (their values
  are kept exactly); Namespace and dataclasses become dicts, paths strings, enums their values.
- ``check_loadable`` then walks the whole dict, after the ``on_save_checkpoint`` hooks added their own keys, and
  refuses what a safe load would refuse, naming the key path, the type and the fix, before any file is touched.

A value is loadable when its type is exactly one of ``PLAIN_TYPES`` (a subclass such as ``numpy.float64``, a
``float``, or an ``IntEnum``, an ``int``, is pickled as its own class, which a safe load refuses), a tensor, or a
class registered with ``torch.serialization.add_safe_globals``.
"""

from __future__ import annotations

import dataclasses
import sys
from argparse import Namespace
from collections import OrderedDict
from collections.abc import Mapping
from enum import Enum
from pathlib import PurePath
from typing import Any

import torch

from fulmen.utilities.rank_zero import rank_zero_warn

# What torch's safe unpickler rebuilds without an allow-list entry (checked against torch 2.13).
PLAIN_TYPES = frozenset({
    type(None), bool, int, float, complex, str, bytes, bytearray, torch.Size, torch.dtype, torch.device,
    torch.layout, torch.memory_format,
})
_CONTAINERS = (dict, OrderedDict, list, tuple, set)
_TENSORS = (torch.Tensor, torch.nn.Parameter)


def _numpy_value(value: Any) -> Any:
    """``value`` if it is not a numpy scalar or array; otherwise the same number(s) as plain data (a scalar's
    ``item()``; an array as a tensor, or as nested lists when torch has no dtype for it)."""
    np = sys.modules.get("numpy")
    if np is None:  # numpy not imported: no value can be a numpy one
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        try:
            return torch.from_numpy(np.array(value, copy=True, order="C"))
        except TypeError:  # object, string or datetime arrays
            return value.tolist()
    return value


def to_plain(value: Any, where: str = "hyperparameter") -> Any:
    """``value`` as plain data that a safe load accepts.

    Numpy values become numbers and tensors; Namespace and dataclasses dicts; paths strings; enums their value;
    subclasses of int, float and str their base type. Tensors, numbers, strings, dtypes and devices stay; classes
    and functions become their dotted names and other objects their ``repr`` (each with a warning naming ``where``).
    """
    kind = type(value)
    if kind in PLAIN_TYPES or kind in _TENSORS:
        return value
    if kind is dict or kind is OrderedDict or isinstance(value, Mapping):
        return {to_plain(k, where): to_plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    if kind is list or kind is tuple:
        items = [to_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if kind is list else tuple(items)
    converted = _numpy_value(value)
    if converted is not value:
        return to_plain(converted, where)
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, Enum):
        return to_plain(value.value, where)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Namespace):
        return {k: to_plain(v, f"{where}.{k}") for k, v in vars(value).items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name), f"{where}.{f.name}") for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):  # a namedtuple or another subclass: its items, as the base type
        items = [to_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, (set, frozenset)):
        return [to_plain(v, where) for v in value]
    for base in (bool, int, float, complex, str, bytes):
        if isinstance(value, base):
            return base(value)
    if isinstance(value, type) or callable(value):
        name = f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', repr(value))}"
        rank_zero_warn(f"{where} {value!r} is stored in the checkpoint as the text {name!r} (checkpoints hold "
                       "plain data only, so that they load without running code)")
        return name
    text = repr(value)
    rank_zero_warn(f"{where} of type {type(value).__name__} is stored in the checkpoint as its repr {text!r} "
                   "(checkpoints hold plain data only); convert it to numbers, strings, lists or dicts to keep it")
    return text


def plain_numbers(value: Any) -> Any:
    """``value`` with every numpy scalar and array inside its dicts, lists and tuples made plain, and nothing else
    changed (for the optimizer and scheduler states, whose other values are the optimizer's own business)."""
    kind = type(value)
    if kind in PLAIN_TYPES or kind in _TENSORS:
        return value
    if kind is dict or kind is OrderedDict:
        return kind((k, plain_numbers(v)) for k, v in value.items())
    if kind is list or kind is tuple:
        return kind(plain_numbers(v) for v in value)
    return _numpy_value(value)


def check_loadable(checkpoint: dict[str, Any]) -> None:
    """Raise TypeError, naming the first value's key path and type, if ``checkpoint`` holds anything that
    ``torch.load(weights_only=True)`` would refuse."""
    allowed = _registered_safe_types()
    stack: list[tuple[str, Any]] = [(f"checkpoint[{k!r}]", v) for k, v in reversed(list(checkpoint.items()))]
    while stack:
        path, value = stack.pop()
        kind = type(value)
        if kind in PLAIN_TYPES or kind in _TENSORS or kind in allowed:
            continue
        if kind in _CONTAINERS:
            if kind is dict or kind is OrderedDict:
                for key in value:
                    if type(key) not in PLAIN_TYPES and type(key) not in allowed:
                        raise _refusal(f"{path} (a key)", key)
                stack.extend((f"{path}[{k!r}]", v) for k, v in reversed(list(value.items())))
            else:
                stack.extend((f"{path}[{i}]", v) for i, v in reversed(list(enumerate(value))))
            continue
        raise _refusal(path, value)


def _registered_safe_types() -> frozenset:
    """Classes the user allowed with ``torch.serialization.add_safe_globals`` (a safe load accepts them)."""
    found = set()
    for entry in torch.serialization.get_safe_globals():
        found.add(entry[0] if isinstance(entry, tuple) else entry)
    return frozenset(t for t in found if isinstance(t, type))


def _refusal(path: str, value: Any) -> TypeError:
    kind = type(value)
    name = f"{kind.__module__}.{kind.__qualname__}" if kind.__module__ != "builtins" else kind.__qualname__
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, (np.ndarray, np.generic)):
        fix = ("store a tensor (torch.from_numpy(value)) or a Python number (value.item()) instead, and convert it "
               "back in on_load_checkpoint")
    elif isinstance(value, torch.Tensor):
        fix = "store a plain tensor (value.as_subclass(torch.Tensor)) or register the class with " \
              "torch.serialization.add_safe_globals"
    else:
        fix = ("store its data as tensors, numbers, strings, lists or dicts (for example its state_dict() or "
               "vars(value)) and rebuild the object in on_load_checkpoint, or, for a class you trust, register it "
               "with torch.serialization.add_safe_globals([...]) in every process that saves and loads")
    return TypeError(
        f"Cannot save the checkpoint: {path} is a {name}, which torch.load(weights_only=True) refuses to load, so "
        f"the file could not be resumed from or loaded safely. Nothing was written; {fix}"
    )

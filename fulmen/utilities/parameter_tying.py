"""Tied parameters (one tensor under several names, such as shared input and output embeddings), which moving a
module to a device or converting its dtype can untie."""

from __future__ import annotations

from typing import Any

from torch import nn


def find_shared_parameters(module: nn.Module) -> list[list[str]]:
    """The groups of names under which the same parameter appears in ``module`` (groups of two or more)."""
    names: dict[int, list[str]] = {}
    for name, param in module.named_parameters(remove_duplicate=False):
        names.setdefault(id(param), []).append(name)
    return [group for group in names.values() if len(group) > 1]


def _get(module: nn.Module, name: str) -> Any:
    *path, attr = name.split(".")
    for part in path:
        module = getattr(module, part)
    return module, attr


def set_shared_parameters(module: nn.Module, shared_params: list[list[str]]) -> nn.Module:
    """Tie again the parameters of each group of names (as ``find_shared_parameters`` returned them): every name of
    a group gets the parameter of its first name. Returns ``module``."""
    for group in shared_params:
        owner, attr = _get(module, group[0])
        first = getattr(owner, attr)
        for name in group[1:]:
            other, other_attr = _get(module, name)
            setattr(other, other_attr, first)
    return module

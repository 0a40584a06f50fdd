"""What devices this machine has: the number of CUDA devices, whether MPS exists, and torch_xla's devices.

These functions are the only place that asks torch (or torch_xla) about the hardware: the accelerators and the
Trainer's argument checks call them through this module, so the tests fake other machines by replacing them.
"""

from __future__ import annotations

import os
from typing import Optional

import torch


def cuda_count() -> int:
    """CUDA devices this process can use (``CUDA_VISIBLE_DEVICES`` applies: indices count the visible ones)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def xla_available() -> bool:
    """Whether torch_xla is installed (found without importing it)."""
    import importlib.util

    return importlib.util.find_spec("torch_xla") is not None


def xla_device_type() -> Optional[str]:
    """The kind of device torch_xla runs on here ('TPU', 'CPU', ...: the ``PJRT_DEVICE`` it chose), None without
    torch_xla."""
    if not xla_available():
        return None
    chosen = os.environ.get("PJRT_DEVICE")
    if chosen:  # set by the user: no need to start torch_xla to know
        return chosen.upper()
    import torch_xla.runtime as xr

    return xr.device_type()


def xla_count() -> int:
    """XLA devices this process can use, 0 without torch_xla."""
    if not xla_available():
        return 0
    import torch_xla.runtime as xr

    return xr.addressable_runtime_device_count()


def visible_devices_note() -> str:
    """A hint for error messages: the CUDA_VISIBLE_DEVICES setting, when there is one."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return "" if visible is None else f" (CUDA_VISIBLE_DEVICES={visible!r} limits what this process sees)"

"""The MPS accelerator (Apple silicon GPUs through Metal)."""

from __future__ import annotations

from typing import Any, Union

import torch
from typing_extensions import override

from fulmen.accelerators import devices
from fulmen.accelerators.accelerator import Accelerator


class MPSAccelerator(Accelerator):
    """Apple silicon GPUs through Metal."""

    name = "mps"

    @override
    def get_device_stats(self, device: Union[str, torch.device]) -> dict[str, Any]:
        return {"mps.current_allocated_bytes": float(torch.mps.current_allocated_memory()),
                "mps.driver_allocated_bytes": float(torch.mps.driver_allocated_memory())}

    @staticmethod
    @override
    def is_available() -> bool:
        return devices.mps_available()


def get_device_stats() -> dict[str, float]:
    """The machine's CPU load and memory and swap use, in percent (psutil): on Apple silicon the GPU shares them."""
    from fulmen.accelerators.cpu import get_cpu_stats

    return get_cpu_stats()

"""The CPU accelerator, and the CPU statistics DeviceStatsMonitor logs."""

from __future__ import annotations

from typing import Any, Union

import torch
from typing_extensions import override

from fulmen.accelerators.accelerator import Accelerator


class CPUAccelerator(Accelerator):
    """The CPU: always present, one device (several processes share it)."""

    name = "cpu"

    @override
    def get_device_stats(self, device: Union[str, torch.device]) -> dict[str, Any]:
        return get_cpu_stats()

    @staticmethod
    @override
    def get_parallel_devices(devices: Any) -> list[torch.device]:
        count = devices if isinstance(devices, int) else len(devices)
        return [torch.device("cpu")] * count

    @staticmethod
    @override
    def is_available() -> bool:
        return True




def get_cpu_stats() -> dict[str, float]:
    """The machine's CPU load and memory and swap use, in percent (psutil, an optional extra)."""
    try:
        import psutil
    except ImportError as err:
        raise ModuleNotFoundError("CPU statistics need psutil: pip install 'fulmen[stats]' (or pip install psutil), "
                                  "or pass DeviceStatsMonitor(cpu_stats=False)") from err
    return {"cpu_vm_percent": psutil.virtual_memory().percent, "cpu_percent": psutil.cpu_percent(),
            "cpu_swap_percent": psutil.swap_memory().percent}

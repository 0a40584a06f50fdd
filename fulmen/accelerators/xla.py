"""The XLA accelerator: TPUs (and the other devices of torch_xla's PJRT runtime)."""

from __future__ import annotations

from typing import Any, Union

import torch
from typing_extensions import override

from fulmen.accelerators import devices
from fulmen.accelerators.accelerator import Accelerator


class XLAAccelerator(Accelerator):
    """TPUs (and the other devices of torch_xla's PJRT runtime), ``Trainer(accelerator="tpu")``."""

    name = "xla"

    @override
    def get_device_stats(self, device: Union[str, torch.device]) -> dict[str, Any]:
        import torch_xla.core.xla_model as xm

        try:
            info = xm.get_memory_info(device)
        except RuntimeError:  # PJRT's CPU client keeps no allocator statistics
            return {}
        return {f"xla.{key}": float(value) for key, value in info.items()}

    @staticmethod
    @override
    def auto_device_count() -> int:
        return devices.xla_count()

    @staticmethod
    @override
    def is_available() -> bool:
        return devices.xla_count() > 0

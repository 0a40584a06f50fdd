"""The Accelerator base class: a kind of device."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Union

import torch

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer


class Accelerator:
    """A kind of device. Subclasses say whether it is present, how many there are, how to prepare one and what
    DeviceStatsMonitor reads from it. Pass an instance as ``Trainer(accelerator=...)``, or its name."""

    name = "cpu"

    def setup_device(self, device: torch.device) -> None:
        """Prepare ``device`` before the module is moved there."""

    def setup(self, trainer: "Trainer") -> None:
        """Called once a run has its module and strategy."""

    def teardown(self) -> None:
        """Release what the run held on the device."""

    def get_device_stats(self, device: Union[str, torch.device]) -> dict[str, Any]:
        """The statistics DeviceStatsMonitor logs for ``device``."""
        raise NotImplementedError

    @staticmethod
    def parse_devices(devices: Any) -> Any:
        """A ``devices`` argument as the device indices (or count) it means."""
        return devices

    @classmethod
    def get_parallel_devices(cls, devices: Any) -> list[torch.device]:
        """The torch devices for the parsed ``devices`` (indices of this kind's devices)."""
        return [torch.device(cls.name, i) for i in devices]

    @staticmethod
    def auto_device_count() -> int:
        """How many devices ``devices="auto"`` uses."""
        return 1

    @staticmethod
    def is_available() -> bool:
        """Whether this kind of device is present."""
        return False

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

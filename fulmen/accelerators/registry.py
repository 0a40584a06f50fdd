"""The accelerators by name: ``AcceleratorRegistry`` (Lightning's, with 'cpu', 'cuda', 'mps' and 'tpu'
registered), and the questions the Trainer's argument checks ask about them."""

from __future__ import annotations

from typing import Optional

import torch

from fulmen.accelerators import devices
from fulmen.accelerators.accelerator import Accelerator
from fulmen.accelerators.cpu import CPUAccelerator
from fulmen.accelerators.cuda import CUDAAccelerator
from fulmen.accelerators.mps import MPSAccelerator
from fulmen.accelerators.xla import XLAAccelerator
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.registry import _Registry

_BY_NAME: dict[str, type[Accelerator]] = {"cpu": CPUAccelerator, "cuda": CUDAAccelerator, "mps": MPSAccelerator,
                                          "xla": XLAAccelerator}


class _AcceleratorRegistry(_Registry):
    """Accelerator classes by name: ``AcceleratorRegistry.register("sota", SOTAAccelerator, description="...",
    a=1)`` (or as a class decorator) adds one, and ``Trainer(accelerator="sota")`` then builds
    ``SOTAAccelerator(a=1)``."""

    kind = "accelerator"

    def available_accelerators(self) -> set[str]:
        """The registered names."""
        return set(self.keys())


AcceleratorRegistry = _AcceleratorRegistry()
for _name, _cls in (("cpu", CPUAccelerator), ("cuda", CUDAAccelerator), ("mps", MPSAccelerator),
                    ("tpu", XLAAccelerator)):
    AcceleratorRegistry.register(_name, _cls, description=_cls.__name__)


def by_name(name: str) -> Accelerator:
    """The accelerator object for 'cpu', 'cuda', 'mps' or 'xla'."""
    return _BY_NAME[name]()


def name_of(accelerator: Accelerator) -> str:
    """The device type an Accelerator object runs on ('cpu', 'cuda', 'mps', 'xla'), for instances of these classes
    and their subclasses; others are refused with the fix."""
    for name, cls in _BY_NAME.items():
        if isinstance(accelerator, cls):
            return name
    raise MisconfigurationException(
        f"Trainer(accelerator={accelerator!r}) is an accelerator fulmen cannot run on; subclass "
        "fulmen.accelerators.CPUAccelerator, CUDAAccelerator, MPSAccelerator or XLAAccelerator, or pass 'cpu', 'cuda', "
        "'mps' or 'tpu'")


def available_names() -> list[str]:
    """The kinds of device present here, for error messages."""
    return [name for name, cls in _BY_NAME.items() if cls.is_available()]


def auto_accelerator() -> str:
    """The best accelerator present: cuda, then mps, then TPUs through torch_xla, then cpu. torch_xla also runs on
    the CPU (``PJRT_DEVICE=CPU``); that is taken only when asked for, with ``accelerator="tpu"``."""
    if devices.cuda_count() > 0:
        return "cuda"
    if devices.mps_available():
        return "mps"
    if devices.xla_device_type() == "TPU" and devices.xla_count() > 0:
        return "xla"
    return "cpu"


def available(accelerator: str) -> bool:
    """Whether ``accelerator`` ('cpu', 'cuda', 'mps', 'xla') can run here."""
    cls = _BY_NAME.get(accelerator)
    return cls is not None and cls.is_available()


def device_count(accelerator: str) -> int:
    """How many devices of that kind exist (the CPU counts as one device)."""
    if accelerator == "cuda":
        return devices.cuda_count()
    if accelerator == "mps":
        return 1 if devices.mps_available() else 0
    if accelerator == "xla":
        return devices.xla_count()
    return 1


def device_stats(device: torch.device) -> dict[str, float]:
    """What DeviceStatsMonitor logs for ``device`` (see each accelerator's ``get_device_stats``)."""
    return _BY_NAME.get(device.type, CPUAccelerator)().get_device_stats(device)


def describe(accelerator: str, count: Optional[int] = None) -> str:
    """'2 cuda devices (0, 1)' and the like, for error messages."""
    count = device_count(accelerator) if count is None else count
    if count == 0:
        return f"no {accelerator} device"
    return f"{count} {accelerator} device{'s' if count != 1 else ''} ({', '.join(map(str, range(count)))})"

"""The accelerators by name: ``AcceleratorRegistry`` (Lightning's, with 'cpu', 'cuda', 'mps' and 'tpu'
registered), and the questions the Trainer's argument checks ask about them."""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch

from fulmen.accelerators import devices
from fulmen.accelerators.accelerator import Accelerator
from fulmen.accelerators.cpu import CPUAccelerator
from fulmen.accelerators.cuda import CUDAAccelerator
from fulmen.accelerators.mps import MPSAccelerator
from fulmen.accelerators.xla import XLAAccelerator
from fulmen.utilities.exceptions import MisconfigurationException

_BY_NAME: dict[str, type[Accelerator]] = {"cpu": CPUAccelerator, "cuda": CUDAAccelerator, "mps": MPSAccelerator,
                                          "xla": XLAAccelerator}


class _AcceleratorRegistry(dict):
    """Accelerator classes by name, each with a description and the keyword arguments to build it with.

    ``AcceleratorRegistry.register("sota", SOTAAccelerator, description="...", a=1)`` (or as a class decorator)
    adds one; ``Trainer(accelerator="sota")`` then builds ``SOTAAccelerator(a=1)``. ``get(name)`` builds the
    registered accelerator.
    """

    def register(self, name: str, accelerator: Optional[Callable[..., Any]] = None, description: str = "",
                 override: bool = False, **init_params: Any) -> Callable[..., Any]:
        """Register ``accelerator`` under ``name``; without ``accelerator``, return a class decorator that does."""
        if not isinstance(name, str):
            raise TypeError(f"AcceleratorRegistry.register(name={name!r}): the name must be a str")
        if name in self and not override:
            raise MisconfigurationException(f"{name!r} is already in the AcceleratorRegistry; pass override=True "
                                            "to replace it")

        def do_register(cls: Callable[..., Any]) -> Callable[..., Any]:
            self[name] = {"accelerator": cls, "accelerator_name": name, "description": description,
                          "init_params": init_params}
            return cls

        return do_register(accelerator) if accelerator is not None else do_register

    def get(self, name: str, default: Optional[Any] = None) -> Any:  # type: ignore[override]
        """A new accelerator of the class registered as ``name``, built with its registered arguments."""
        if name in self:
            entry = self[name]
            return entry["accelerator"](**entry["init_params"])
        if default is not None:
            return default
        raise KeyError(f"{name!r} is not in the AcceleratorRegistry; registered: "
                       f"{', '.join(sorted(self.available_accelerators()))}")

    def remove(self, name: str) -> None:
        """Remove the accelerator registered as ``name``."""
        self.pop(name)

    def available_accelerators(self) -> set[str]:
        """The registered names."""
        return set(self.keys())

    def __str__(self) -> str:
        return f"Registered Accelerators: {', '.join(sorted(self.available_accelerators()))}"


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

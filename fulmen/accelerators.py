"""Accelerators: which kinds of device this machine has, the devices a Trainer(accelerator=, devices=) request
means, and one small class per kind (Lightning's ``CPUAccelerator``, ``CUDAAccelerator``, ``MPSAccelerator``,
``XLAAccelerator``).

The number of CUDA devices, whether MPS exists and the XLA devices are read in ``cuda_count``, ``mps_available``,
``xla_count`` and ``xla_device_type`` only: the tests fake other machines by replacing those functions.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Union

import torch

from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_info


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


class Accelerator:
    """A kind of device. Subclasses say whether it is present, how many there are, how to prepare one and what
    DeviceStatsMonitor reads from it. Pass an instance as ``Trainer(accelerator=...)``, or its name."""

    name = "cpu"

    def setup_device(self, device: torch.device) -> None:
        """Prepare ``device`` before the module is moved there."""

    def setup(self, trainer: Any) -> None:
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


class CPUAccelerator(Accelerator):
    """The CPU: always present, one device (several processes share it)."""

    name = "cpu"

    def get_device_stats(self, device: Union[str, torch.device]) -> dict[str, Any]:
        return cpu_stats()

    @staticmethod
    def get_parallel_devices(devices: Any) -> list[torch.device]:
        count = devices if isinstance(devices, int) else len(devices)
        return [torch.device("cpu")] * count

    @staticmethod
    def is_available() -> bool:
        return True


class CUDAAccelerator(Accelerator):
    """NVIDIA GPUs through CUDA."""

    name = "cuda"

    def setup_device(self, device: torch.device) -> None:
        if device.type != "cuda":
            raise MisconfigurationException(f"CUDAAccelerator got device {device}, which is not a CUDA device")
        _tensor_core_hint(device)
        torch.cuda.set_device(device)

    def teardown(self) -> None:
        torch.cuda.empty_cache()  # give the cached blocks back, so a later run in this process starts clean

    def get_device_stats(self, device: Union[str, torch.device]) -> dict[str, Any]:
        # The caching allocator's counters: read on the host, no device sync.
        return dict(torch.cuda.memory_stats(device))

    @staticmethod
    def auto_device_count() -> int:
        return cuda_count()

    @staticmethod
    def is_available() -> bool:
        return cuda_count() > 0


class MPSAccelerator(Accelerator):
    """Apple silicon GPUs through Metal."""

    name = "mps"

    def get_device_stats(self, device: Union[str, torch.device]) -> dict[str, Any]:
        return {"mps.current_allocated_bytes": float(torch.mps.current_allocated_memory()),
                "mps.driver_allocated_bytes": float(torch.mps.driver_allocated_memory())}

    @staticmethod
    def is_available() -> bool:
        return mps_available()


class XLAAccelerator(Accelerator):
    """TPUs (and the other devices of torch_xla's PJRT runtime), ``Trainer(accelerator="tpu")``."""

    name = "xla"

    def get_device_stats(self, device: Union[str, torch.device]) -> dict[str, Any]:
        import torch_xla.core.xla_model as xm

        try:
            info = xm.get_memory_info(device)
        except RuntimeError:  # PJRT's CPU client keeps no allocator statistics
            return {}
        return {f"xla.{key}": float(value) for key, value in info.items()}

    @staticmethod
    def auto_device_count() -> int:
        return xla_count()

    @staticmethod
    def is_available() -> bool:
        return xla_count() > 0


_BY_NAME: dict[str, type[Accelerator]] = {"cpu": CPUAccelerator, "cuda": CUDAAccelerator, "mps": MPSAccelerator,
                                          "xla": XLAAccelerator}


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
        "fulmen.accelerators.CPUAccelerator, CUDAAccelerator, MPSAccelerator or XLAAccelerator, or pass 'cpu', "
        "'cuda', 'mps' or 'tpu'")


def available_names() -> list[str]:
    """The kinds of device present here, for error messages."""
    return [name for name, cls in _BY_NAME.items() if cls.is_available()]


def auto_accelerator() -> str:
    """The best accelerator present: cuda, then mps, then TPUs through torch_xla, then cpu. torch_xla also runs on
    the CPU (``PJRT_DEVICE=CPU``); that is taken only when asked for, with ``accelerator="tpu"``."""
    if cuda_count() > 0:
        return "cuda"
    if mps_available():
        return "mps"
    if xla_device_type() == "TPU" and xla_count() > 0:
        return "xla"
    return "cpu"


def available(accelerator: str) -> bool:
    """Whether ``accelerator`` ('cpu', 'cuda', 'mps', 'xla') can run here."""
    cls = _BY_NAME.get(accelerator)
    return cls is not None and cls.is_available()


def device_count(accelerator: str) -> int:
    """How many devices of that kind exist (the CPU counts as one device)."""
    if accelerator == "cuda":
        return cuda_count()
    if accelerator == "mps":
        return 1 if mps_available() else 0
    if accelerator == "xla":
        return xla_count()
    return 1


def device_stats(device: torch.device) -> dict[str, float]:
    """What DeviceStatsMonitor logs for ``device`` (see each accelerator's ``get_device_stats``)."""
    return _BY_NAME.get(device.type, CPUAccelerator)().get_device_stats(device)


def cpu_stats() -> dict[str, float]:
    """The machine's CPU load and memory and swap use, in percent (psutil, an optional extra)."""
    try:
        import psutil
    except ImportError as err:
        raise ModuleNotFoundError("CPU statistics need psutil: pip install 'fulmen[stats]' (or pip install psutil), "
                                  "or pass DeviceStatsMonitor(cpu_stats=False)") from err
    return {"cpu_vm_percent": psutil.virtual_memory().percent, "cpu_percent": psutil.cpu_percent(),
            "cpu_swap_percent": psutil.swap_memory().percent}


_hinted: set[int] = set()


def _tensor_core_hint(device: torch.device) -> None:
    """Once per device, as Lightning does: float32 matrix products ignore the tensor cores until the matmul
    precision allows TF32."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index in _hinted or torch.get_float32_matmul_precision() != "highest":
        return
    _hinted.add(index)
    if torch.cuda.get_device_capability(index)[0] >= 8:
        rank_zero_info(f"{torch.cuda.get_device_name(index)!r} has tensor cores that float32 matrix products use "
                       "only with torch.set_float32_matmul_precision('high') (or 'medium'): faster, slightly less "
                       "precise")


def describe(accelerator: str, count: Optional[int] = None) -> str:
    """'2 cuda devices (0, 1)' and the like, for error messages."""
    count = device_count(accelerator) if count is None else count
    if count == 0:
        return f"no {accelerator} device"
    return f"{count} {accelerator} device{'s' if count != 1 else ''} ({', '.join(map(str, range(count)))})"

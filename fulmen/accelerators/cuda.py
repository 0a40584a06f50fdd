"""The CUDA accelerator (NVIDIA GPUs)."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any, Union

import torch
from typing_extensions import override

from fulmen.accelerators import devices
from fulmen.accelerators.accelerator import Accelerator
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_info


class CUDAAccelerator(Accelerator):
    """NVIDIA GPUs through CUDA."""

    name = "cuda"

    @override
    def setup_device(self, device: torch.device) -> None:
        if device.type != "cuda":
            raise MisconfigurationException(f"CUDAAccelerator got device {device}, which is not a CUDA device")
        _tensor_core_hint(device)
        torch.cuda.set_device(device)

    @override
    def teardown(self) -> None:
        torch.cuda.empty_cache()  # give the cached blocks back, so a later run in this process starts clean

    @override
    def get_device_stats(self, device: Union[str, torch.device]) -> dict[str, Any]:
        # The caching allocator's counters: read on the host, no device sync.
        return dict(torch.cuda.memory_stats(device))

    @staticmethod
    @override
    def auto_device_count() -> int:
        return devices.cuda_count()

    @staticmethod
    @override
    def is_available() -> bool:
        return devices.cuda_count() > 0




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


def num_cuda_devices() -> int:
    """How many CUDA devices this process can use (``CUDA_VISIBLE_DEVICES`` applies)."""
    return devices.cuda_count()


def find_usable_cuda_devices(num_devices: int = -1) -> list[int]:
    """The indices of up to ``num_devices`` CUDA devices (-1: all) on which a tensor can be created now, for
    ``Trainer(devices=find_usable_cuda_devices(2))`` on machines whose GPUs run in exclusive mode.

    Two processes asking at the same moment may be given the same device.
    """
    if num_devices == 0:
        return []
    count = devices.cuda_count()
    if count == 0:
        raise ValueError(f"find_usable_cuda_devices({num_devices}): this machine has no visible CUDA device"
                         f"{devices.visible_devices_note()}")
    if num_devices > count:
        raise ValueError(f"find_usable_cuda_devices({num_devices}): this machine has {count} CUDA device"
                         f"{'s' if count != 1 else ''}{devices.visible_devices_note()}")
    usable, busy = [], []
    for index in range(count):
        try:
            torch.tensor(0, device=torch.device("cuda", index))
        except RuntimeError:
            busy.append(index)
            continue
        usable.append(index)
        if len(usable) == num_devices:
            break
    if num_devices != -1 and len(usable) < num_devices:
        raise RuntimeError(f"find_usable_cuda_devices({num_devices}) found {len(usable)} usable CUDA device(s) "
                           f"{usable}; devices {busy} are busy (exclusive mode, or out of memory)")
    return usable


# The nvidia-smi fields get_nvidia_gpu_stats reads, with the units of their values.
_SMI_FIELDS = {"utilization.gpu": "%", "memory.used": "MB", "memory.free": "MB", "utilization.memory": "%",
               "fan.speed": "%", "temperature.gpu": "°C", "temperature.memory": "°C"}


def get_nvidia_gpu_stats(device: Union[str, torch.device]) -> dict[str, float]:
    """Utilisation, memory, fan and temperatures of one GPU as ``nvidia-smi`` reports them, keyed like
    ``"utilization.gpu (%)"``. Needs the ``nvidia-smi`` program; runs it once per call (not in the step)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        raise FileNotFoundError("get_nvidia_gpu_stats needs the nvidia-smi program on PATH")
    index = torch.device(device).index
    index = torch.cuda.current_device() if index is None else index
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:  # nvidia-smi counts every GPU of the machine, torch only the visible ones
        index = int(visible.split(",")[index])
    out = subprocess.run([smi, f"--query-gpu={','.join(_SMI_FIELDS)}", "--format=csv,nounits,noheader",
                          f"--id={index}"], capture_output=True, text=True, check=True).stdout
    stats = {}
    for (field, unit), value in zip(_SMI_FIELDS.items(), out.strip().split(", ")):
        try:
            stats[f"{field} ({unit})"] = float(value)
        except ValueError:  # "[N/A]" on cards without that sensor
            continue
    return stats

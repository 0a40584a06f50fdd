"""Which accelerators this machine has, and the devices a Trainer(accelerator=, devices=) request means."""

from __future__ import annotations

import torch


def cuda_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def available(accelerator: str) -> bool:
    """Whether ``accelerator`` ('cpu', 'cuda', 'mps', 'tpu') can run here."""
    if accelerator == "cpu":
        return True
    if accelerator == "cuda":
        return cuda_count() > 0
    if accelerator == "mps":
        return mps_available()
    return False


def auto_accelerator() -> str:
    """The best accelerator present: cuda, then mps, then cpu."""
    if cuda_count() > 0:
        return "cuda"
    if mps_available():
        return "mps"
    return "cpu"


def device_count(accelerator: str) -> int:
    """How many devices of that kind exist (CPU counts as one device)."""
    if accelerator == "cuda":
        return cuda_count()
    if accelerator == "mps":
        return 1 if mps_available() else 0
    return 1


def device_stats(device: torch.device) -> dict[str, float]:
    """What DeviceStatsMonitor logs for ``device``: the CUDA caching allocator's counters (``torch.cuda.memory_stats``,
    no device sync), the MPS allocator's bytes, or for the CPU its load and memory use (``cpu_stats``)."""
    if device.type == "cuda":
        return dict(torch.cuda.memory_stats(device))
    if device.type == "mps":
        return {"mps.current_allocated_bytes": float(torch.mps.current_allocated_memory()),
                "mps.driver_allocated_bytes": float(torch.mps.driver_allocated_memory())}
    return cpu_stats()


def cpu_stats() -> dict[str, float]:
    """The machine's CPU load and memory and swap use, in percent (psutil, an optional extra)."""
    try:
        import psutil
    except ImportError as err:
        raise ModuleNotFoundError("CPU statistics need psutil: pip install 'fulmen[stats]' (or pip install psutil), "
                                  "or pass DeviceStatsMonitor(cpu_stats=False)") from err
    return {"cpu_vm_percent": psutil.virtual_memory().percent, "cpu_percent": psutil.cpu_percent(),
            "cpu_swap_percent": psutil.swap_memory().percent}

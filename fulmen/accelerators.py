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

"""Accelerators: one small class per kind of device (``CPUAccelerator``, ``CUDAAccelerator``, ``MPSAccelerator``,
``XLAAccelerator``), the registry of their names, and ``find_usable_cuda_devices``.

Which devices exist is read in ``devices.py`` only; ``registry.py`` answers the Trainer's questions about them.
"""

from fulmen.accelerators.accelerator import Accelerator
from fulmen.accelerators.cpu import CPUAccelerator
from fulmen.accelerators.cuda import CUDAAccelerator, find_usable_cuda_devices
from fulmen.accelerators.mps import MPSAccelerator
from fulmen.accelerators.registry import AcceleratorRegistry
from fulmen.accelerators.xla import XLAAccelerator

__all__ = ["Accelerator", "AcceleratorRegistry", "CPUAccelerator", "CUDAAccelerator", "MPSAccelerator",
           "XLAAccelerator", "find_usable_cuda_devices"]

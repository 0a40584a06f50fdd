"""Throughput arithmetic: rolling batches, samples, items and FLOPs per second, the FLOPs of a forward (and
backward) pass, and a GPU's peak FLOPs for model FLOPs utilisation (MFU). The names match
``lightning.fabric.utilities.throughput``; ``ThroughputMonitor`` logs them during a run."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Callable, Optional, Union

import torch

from fulmen.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer


class Throughput:
    """Rates over the last ``window_size`` updates, from running totals.

    Call ``update(time=..., batches=..., samples=...)`` after each batch with the totals so far (seconds since the
    start, batches, samples, optionally ``lengths`` (items, such as tokens) and the ``flops`` of that batch), and
    ``compute()`` for the metrics:

    - always: ``time``, ``batches``, ``samples`` (and ``lengths``), the latest totals;
    - once the window is full: ``device/batches_per_sec``, ``device/samples_per_sec`` (and ``device/items_per_sec``
      with lengths), and with several processes (``world_size`` > 1) the totals ``batches_per_sec``,
      ``samples_per_sec`` and ``items_per_sec``;
    - once ``window_size`` FLOP counts are in: ``device/flops_per_sec`` (and ``flops_per_sec``), and
      ``device/mfu`` (the share of ``available_flops``, one device's peak) when that is known.

    The totals and the time must increase at every update. Every device is assumed to be the same.
    """

    def __init__(self, available_flops: Optional[float] = None, world_size: int = 1, window_size: int = 100,
                 separator: str = "/") -> None:
        if world_size < 1:
            raise ValueError(f"Throughput(world_size={world_size}): the number of processes must be at least 1")
        if window_size < 2:
            raise ValueError(f"Throughput(window_size={window_size}): a rate needs a window of at least 2 updates")
        self.available_flops = available_flops
        self.world_size = world_size
        self.window_size = window_size
        self.separator = separator
        self._time: deque[float] = deque(maxlen=window_size)
        self._batches: deque[int] = deque(maxlen=window_size)
        self._samples: deque[int] = deque(maxlen=window_size)
        self._lengths: deque[int] = deque(maxlen=window_size)
        self._flops: deque[float] = deque(maxlen=window_size)

    def update(self, *, time: float, batches: int, samples: int, lengths: Optional[int] = None,
               flops: Optional[float] = None) -> None:
        """Add one update: the running totals after a batch, and the FLOPs that batch took on one device."""
        if samples < batches:
            raise ValueError(f"Throughput.update: samples ({samples}) must be at least batches ({batches}); pass "
                             "running totals, the samples counting each batch's size")
        if lengths is not None and lengths < samples:
            raise ValueError(f"Throughput.update: lengths ({lengths}) must be at least samples ({samples}); pass the "
                             "running total of items (such as tokens)")
        if lengths is None and self._lengths:
            raise ValueError("Throughput.update: lengths was given before, so it must be given at every update")
        for name, window, value in (("time", self._time, time), ("batches", self._batches, batches),
                                    ("samples", self._samples, samples), ("lengths", self._lengths, lengths)):
            if value is not None and window and value <= window[-1]:
                raise ValueError(f"Throughput.update: {name} must increase at every update (it went from "
                                 f"{window[-1]} to {value}); pass running totals")
        self._time.append(time)
        self._batches.append(batches)
        self._samples.append(samples)
        if lengths is not None:
            self._lengths.append(lengths)
        if flops is not None:
            self._flops.append(flops * self.world_size)

    def compute(self) -> dict[str, Union[int, float]]:
        """The metrics described in the class docstring, from the updates so far."""
        if not self._time:
            return {}
        sep = f"device{self.separator}"
        metrics: dict[str, Union[int, float]] = {"time": self._time[-1], "batches": self._batches[-1],
                                                 "samples": self._samples[-1]}
        if self._lengths:
            metrics["lengths"] = self._lengths[-1]
        several = self.world_size > 1
        elapsed = self._time[-1] - self._time[0]
        if len(self._time) == self.window_size:
            rates = {"batches_per_sec": (self._batches[-1] - self._batches[0]) / elapsed,
                     "samples_per_sec": (self._samples[-1] - self._samples[0]) / elapsed}
            if len(self._lengths) == self.window_size:
                rates["items_per_sec"] = (self._lengths[-1] - self._lengths[0]) / elapsed
            for name, rate in rates.items():
                metrics[sep + name] = rate
                if several:
                    metrics[name] = rate * self.world_size
        if len(self._flops) == self.window_size:
            # The first update's FLOPs were spent before the window's first time stamp.
            flops_per_sec = (sum(self._flops) - self._flops[0]) / elapsed
            if several:
                metrics["flops_per_sec"] = flops_per_sec
            metrics[sep + "flops_per_sec"] = flops_per_sec / self.world_size
            if self.available_flops:
                metrics[sep + "mfu"] = flops_per_sec / self.world_size / self.available_flops
        return metrics

    def reset(self) -> None:
        """Forget every update."""
        for window in (self._time, self._batches, self._samples, self._lengths, self._flops):
            window.clear()


def measure_flops(model: torch.nn.Module, forward_fn: Callable[[], torch.Tensor],
                  loss_fn: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> int:
    """The FLOPs of ``forward_fn()`` (and, with ``loss_fn``, of the loss and its backward), counted by
    ``torch.utils.flop_counter``. Build the model and input on the ``meta`` device to count without computing::

        with torch.device("meta"):
            model, x = Net(), torch.randn(8, 32)
        model.flops_per_batch = measure_flops(model, lambda: model(x), lambda y: y.sum())
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        out = forward_fn()
        if loss_fn is not None:
            loss_fn(out).backward()
    return int(counter.get_total_flops())


# Peak dense (no sparsity) throughput of one GPU, in TFLOP/s (TOP/s for int8), from NVIDIA's data sheets. float64
# is the tensor-core figure where there is one; "tfloat32" is what float32 matrix products reach when
# torch.get_float32_matmul_precision() allows TF32.
_PEAK_TFLOPS: dict[str, dict[Union[torch.dtype, str], float]] = {
    "h200 sxm": {torch.float64: 67, torch.float32: 67, "tfloat32": 494.5, torch.bfloat16: 989.5,
                 torch.float16: 989.5, torch.int8: 1979},
    "h200 nvl": {torch.float64: 60, torch.float32: 60, "tfloat32": 417.5, torch.bfloat16: 835.5,
                 torch.float16: 835.5, torch.int8: 1670.5},
    "h100 sxm": {torch.float64: 67, torch.float32: 67, "tfloat32": 494.5, torch.bfloat16: 989.5,
                 torch.float16: 989.5, torch.int8: 1979},
    "h100 nvl": {torch.float64: 60, torch.float32: 60, "tfloat32": 417.5, torch.bfloat16: 835.5,
                 torch.float16: 835.5, torch.int8: 1670.5},
    "h100 pcie": {torch.float64: 51, torch.float32: 51, "tfloat32": 378, torch.bfloat16: 756,
                  torch.float16: 756, torch.int8: 1513},
    "a100": {torch.float64: 19.5, torch.float32: 19.5, "tfloat32": 156, torch.bfloat16: 312, torch.float16: 312,
             torch.int8: 624},
    "a10": {torch.float32: 31.2, "tfloat32": 62.5, torch.bfloat16: 125, torch.float16: 125, torch.int8: 250},
    "l40s": {torch.float32: 91.6, "tfloat32": 183, torch.bfloat16: 362, torch.float16: 362, torch.int8: 733},
    "l4": {torch.float32: 30.3, "tfloat32": 60, torch.bfloat16: 121, torch.float16: 121, torch.int8: 242.5},
    "v100 sxm": {torch.float64: 7.8, torch.float32: 15.7, torch.float16: 125},
    "v100 pcie": {torch.float64: 7, torch.float32: 14, torch.float16: 112},
    "t4": {torch.float32: 8.1, torch.float16: 65, torch.int8: 130},
}


def chip_name(device_name: str) -> Optional[str]:
    """The key of ``_PEAK_TFLOPS`` for a CUDA device name such as 'NVIDIA H100 80GB HBM3', or None."""
    name = device_name.lower()
    for family in ("h200", "h100"):
        if family in name:
            if "nvl" in name:
                return f"{family} nvl"
            if "pcie" in name:
                return f"{family} pcie" if family == "h100" else None
            return f"{family} sxm"  # the SXM parts are named plain ('NVIDIA H200') or by memory ('80GB HBM3')
    if "a100" in name:
        return "a100"
    if "l40s" in name:
        return "l40s"
    if "v100" in name:
        return "v100 sxm" if "sxm" in name else "v100 pcie"
    words = name.replace("-", " ").split()
    for chip in ("a10", "l4", "t4"):
        if chip in words:
            return chip
    return None


def get_available_flops(device: torch.device, dtype: Union[torch.dtype, str]) -> Optional[int]:
    """The peak FLOP/s of one ``device`` for matrix products in ``dtype``; None (with a warning for a GPU) when it
    is not known. CPUs have no entry."""
    if device.type != "cuda":
        return None
    device_name = torch.cuda.get_device_name(device)
    chip = chip_name(device_name)
    if chip is None:
        rank_zero_warn(f"The peak FLOPs of {device_name!r} are not known, so MFU is not computed")
        return None
    peaks = _PEAK_TFLOPS[chip]
    if dtype is torch.float32 and "tfloat32" in peaks and torch.get_float32_matmul_precision() != "highest":
        dtype = "tfloat32"
    if dtype not in peaks:
        rank_zero_warn(f"The peak FLOPs of {device_name!r} for {dtype} are not known, so MFU is not computed")
        return None
    return int(peaks[dtype] * 1e12)


def available_flops_of(trainer: "Trainer") -> Optional[int]:
    """``get_available_flops`` for the Trainer's device and the dtype its precision computes in."""
    return get_available_flops(trainer.strategy.root_device, trainer.precision_plugin.compute_dtype)

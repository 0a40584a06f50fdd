"""Throughput arithmetic, FLOP counting, peak-FLOPs lookup, and ThroughputMonitor on a real run."""

from __future__ import annotations

import time

import pytest
import torch

import fulmen as L
from fulmen.callbacks import Callback, ThroughputMonitor
from fulmen.demos.boring_classes import BoringModel
from fulmen.utilities import measure_flops
from fulmen.utilities.throughput import Throughput, chip_name, get_available_flops
from tests.parity.test_logger_calls import recording_logger


def test_rates_over_the_window():
    tp = Throughput(available_flops=100.0, world_size=2, window_size=3)
    for i in range(1, 5):  # one second a batch of 4 samples, 40 items and 10 FLOPs per device
        tp.update(time=float(i), batches=i, samples=4 * i, lengths=40 * i, flops=10)
    got = tp.compute()
    assert got == {
        "time": 4.0, "batches": 4, "samples": 16, "lengths": 160,
        "device/batches_per_sec": 1.0, "batches_per_sec": 2.0,
        "device/samples_per_sec": 4.0, "samples_per_sec": 8.0,
        "device/items_per_sec": 40.0, "items_per_sec": 80.0,
        "device/flops_per_sec": 10.0, "flops_per_sec": 20.0, "device/mfu": 0.1,
    }
    tp.reset()
    assert tp.compute() == {}


def test_rates_wait_for_a_full_window_and_one_process_has_no_totals():
    tp = Throughput(window_size=3)
    tp.update(time=1.0, batches=1, samples=2)
    tp.update(time=2.0, batches=2, samples=4)
    assert tp.compute() == {"time": 2.0, "batches": 2, "samples": 4}
    tp.update(time=3.0, batches=3, samples=6)
    assert tp.compute()["device/samples_per_sec"] == 2.0 and "samples_per_sec" not in tp.compute()


@pytest.mark.parametrize("update, words", [
    (dict(time=2.0, batches=3, samples=2), r"samples \(2\) must be at least batches \(3\)"),
    (dict(time=2.0, batches=1, samples=2, lengths=1), r"lengths \(1\) must be at least samples \(2\)"),
    (dict(time=0.5, batches=2, samples=4), "time must increase"),
    (dict(time=2.0, batches=1, samples=4), "batches must increase"),
])
def test_bad_updates_are_named(update, words):
    tp = Throughput()
    tp.update(time=1.0, batches=1, samples=2)
    with pytest.raises(ValueError, match=words):
        tp.update(**update)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="window_size=1"):
        Throughput(window_size=1)
    with pytest.raises(ValueError, match="window_size=1"):
        ThroughputMonitor(batch_size_fn=len, window_size=1)
    with pytest.raises(TypeError, match="batch_size_fn=4"):
        ThroughputMonitor(batch_size_fn=4)


def test_measure_flops_counts_forward_and_backward():
    with torch.device("meta"):
        model = torch.nn.Linear(32, 16)
        x = torch.randn(8, 32)
        x_grad = torch.randn(8, 32, requires_grad=True)
    forward = measure_flops(model, lambda: model(x))
    assert forward == 2 * 8 * 32 * 16
    # backward: the weight's gradient (and the input's, when it needs one), each as costly as the forward
    assert measure_flops(model, lambda: model(x), lambda y: y.sum()) == 2 * forward
    assert measure_flops(model, lambda: model(x_grad), lambda y: y.sum()) == 3 * forward


@pytest.mark.parametrize("device_name, chip", [
    ("NVIDIA H200", "h200 sxm"), ("NVIDIA H200 NVL", "h200 nvl"), ("NVIDIA H100 80GB HBM3", "h100 sxm"),
    ("NVIDIA H100 PCIe", "h100 pcie"), ("NVIDIA H100 NVL", "h100 nvl"), ("NVIDIA A100-SXM4-80GB", "a100"),
    ("NVIDIA A100 80GB PCIe", "a100"), ("NVIDIA A10", "a10"), ("NVIDIA L4", "l4"), ("NVIDIA L40S", "l40s"),
    ("Tesla V100-SXM2-16GB", "v100 sxm"), ("Tesla V100-PCIE-32GB", "v100 pcie"), ("Tesla T4", "t4"),
    ("NVIDIA L40", None), ("NVIDIA GeForce GTX 1080", None),
])
def test_chip_names(device_name, chip):
    assert chip_name(device_name) == chip


def test_no_peak_flops_on_cpu():
    assert get_available_flops(torch.device("cpu"), torch.float32) is None


class Batches(BoringModel):
    flops_per_batch = 64

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.randn(48, 32), batch_size=4)

    def validation_step(self, batch, batch_idx):
        time.sleep(0.1)  # validation that takes far longer than training
        return super().validation_step(batch, batch_idx)


def test_training_time_leaves_validation_out():
    wall = {}

    class Clock(Callback):
        def on_train_start(self, trainer, pl_module):
            wall["start"] = time.perf_counter()

        def on_train_end(self, trainer, pl_module):
            wall["end"] = time.perf_counter()

    logger = recording_logger("fulmen")
    trainer = L.Trainer(max_epochs=2, limit_val_batches=2, val_check_interval=6, log_every_n_steps=1,
                        num_sanity_val_steps=0, logger=logger, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False,
                        callbacks=[ThroughputMonitor(batch_size_fn=len, window_size=4), Clock()])
    trainer.fit(Batches())
    train = [m for _, m in logger.calls if "train/time" in m]
    assert [m["train/samples"] for m in train] == [4 * i for i in range(1, 25)]
    validations = 4 * 2 * 0.1  # four validation runs of two batches
    assert train[-1]["train/time"] < wall["end"] - wall["start"] - 0.9 * validations
    assert all(m["train/device/flops_per_sec"] > 0 for m in train[3:])

"""DeviceStatsMonitor on a real run: CPU statistics reach the logger; a missing logger or psutil is named."""

from __future__ import annotations

import sys

import pytest
import torch

import fulmen as L
from fulmen.accelerators.registry import device_stats
from fulmen.callbacks import DeviceStatsMonitor
from fulmen.demos.boring_classes import BoringModel
from fulmen.loggers import CSVLogger
from fulmen.utilities.exceptions import MisconfigurationException


def _trainer(**kwargs):
    settings = dict(max_steps=4, limit_val_batches=2, log_every_n_steps=1, enable_progress_bar=False,
                    enable_model_summary=False, enable_checkpointing=False, callbacks=[DeviceStatsMonitor()])
    return L.Trainer(**{**settings, **kwargs})


def test_cpu_statistics_reach_the_csv_file(tmp_path):
    trainer = _trainer(logger=CSVLogger(tmp_path))
    trainer.fit(BoringModel())
    header, *rows = (tmp_path / "lightning_logs" / "version_0" / "metrics.csv").read_text().splitlines()
    columns = header.split(",")
    for hook in ("on_train_batch_start", "on_train_batch_end", "on_validation_batch_start",
                 "on_validation_batch_end"):
        for stat in ("cpu_percent", "cpu_vm_percent", "cpu_swap_percent"):
            assert f"DeviceStatsMonitor.{hook}/{stat}" in columns
    column = columns.index("DeviceStatsMonitor.on_train_batch_end/cpu_vm_percent")
    values = [float(row.split(",")[column]) for row in rows if row.split(",")[column]]
    assert len(values) == 4 and all(0 < v <= 100 for v in values)


def test_needs_a_logger():
    with pytest.raises(MisconfigurationException, match=r"DeviceStatsMonitor needs a logger.*logger=False"):
        _trainer(logger=False).fit(BoringModel())


def test_missing_psutil_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "psutil", None)
    with pytest.raises(ModuleNotFoundError, match=r"fulmen\[stats\].*cpu_stats=False"):
        _trainer().fit(BoringModel())
    _trainer(callbacks=[DeviceStatsMonitor(cpu_stats=False)]).fit(BoringModel())  # nothing to read, no psutil needed


def test_bad_argument():
    with pytest.raises(TypeError, match="cpu_stats='yes'"):
        DeviceStatsMonitor(cpu_stats="yes")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_statistics_are_the_allocator_counters():
    x = torch.ones(1024, device="cuda")
    stats = device_stats(x.device)
    assert stats["allocated_bytes.all.current"] >= x.numel() * 4

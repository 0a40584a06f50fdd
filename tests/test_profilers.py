"""Profilers: the simple table, cProfile statistics and a torch.profiler Chrome trace from real runs; the action
names are Lightning's; with no profiler nothing is wrapped."""

from __future__ import annotations

import json
import logging

import pytest

import fulmen as L
from fulmen.demos.boring_classes import BoringModel
from fulmen.loops.hooks import _noop
from fulmen.profilers import AdvancedProfiler, PassThroughProfiler, PyTorchProfiler, SimpleProfiler


class Model(BoringModel):
    def on_train_epoch_start(self):
        pass


def _fit(profiler, **kwargs):
    trainer = L.Trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=2, profiler=profiler, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False, **kwargs)
    trainer.fit(Model())
    return trainer


def test_simple_profiler_reports_each_action(caplog):
    profiler = SimpleProfiler()
    with caplog.at_level(logging.INFO, logger="fulmen"):
        _fit(profiler)
    counts = {k: len(v) for k, v in profiler.recorded_durations.items()}
    assert counts["run_training_epoch"] == 1 and counts["run_training_batch"] == 3
    assert counts["[_TrainingEpochLoop].train_dataloader_next"] == 3
    assert counts["[Strategy]SingleDeviceStrategy.training_step"] == 3
    assert counts["[Strategy]SingleDeviceStrategy.validation_step"] == 2 + 2  # sanity check and validation
    assert counts["[LightningModule]Model.on_train_epoch_start"] == 1
    assert "FIT Profiler Report" in caplog.text and "run_training_batch" in caplog.text
    assert "Mean duration (s)" in caplog.text and "Percentage %" in caplog.text


def test_simple_profiler_writes_its_file_in_the_log_dir(tmp_path):
    trainer = _fit(SimpleProfiler(filename="perf"), default_root_dir=tmp_path)
    text = (tmp_path / "fit-perf.txt").read_text()
    assert text.startswith("FIT Profiler Report") and "[_TrainingEpochLoop].train_dataloader_next" in text
    assert trainer.log_dir == str(tmp_path)


def test_advanced_profiler_writes_cprofile_statistics(tmp_path):
    _fit(AdvancedProfiler(dirpath=tmp_path, filename="adv", line_count_restriction=5))
    text = (tmp_path / "fit-adv.txt").read_text()
    assert "Profile stats for: run_training_batch" in text and "function calls" in text and "cumulative" in text


def test_pytorch_profiler_exports_a_chrome_trace(tmp_path):
    _fit(PyTorchProfiler(dirpath=tmp_path, filename="torch", row_limit=5))
    trace = json.loads((tmp_path / "fit-torch.pt.trace.json").read_text())
    names = {event.get("name") for event in trace["traceEvents"]}
    assert "run_training_batch" in names and "aten::addmm" in names
    assert any(str(n).startswith("[pl][module]torch.nn.modules.linear.Linear: layer") for n in names)
    assert "Self CPU" in (tmp_path / "fit-torch.txt").read_text()


def test_pytorch_profiler_with_a_schedule_writes_tensorboard_traces(tmp_path):
    """A schedule makes every step a profiler step; each active cycle goes to on_trace_ready (here TensorBoard's
    trace handler, whose files the TensorBoard profiler plugin reads)."""
    import torch

    handler = torch.profiler.tensorboard_trace_handler(str(tmp_path / "tb"), worker_name="w")
    schedule = torch.profiler.schedule(wait=1, warmup=1, active=2, repeat=2)
    _fit(PyTorchProfiler(dirpath=tmp_path, filename="torch", schedule=schedule, on_trace_ready=handler,
                         export_to_chrome=False))
    traces = sorted((tmp_path / "tb").glob("w.*.pt.trace.json"))
    assert len(traces) == 2  # two cycles of wait, warmup, active
    names = {event.get("name") for event in json.loads(traces[0].read_text())["traceEvents"]}
    assert "aten::addmm" in names
    with pytest.raises(ValueError, match="schedule=3"):
        PyTorchProfiler(schedule=3)


def test_no_profiler_wraps_nothing():
    trainer = _fit(None)
    assert isinstance(trainer.profiler, PassThroughProfiler) and trainer._profiler is None
    assert trainer._hooks.on_train_batch_start is _noop
    assert trainer._step_fn.__module__ == "fulmen.loops.optimization.automatic"


@pytest.mark.parametrize("value, error, words", [
    ("fast", ValueError, "profiler='fast'"),
    (3, TypeError, "got 3 of type int"),
])
def test_bad_profiler_argument(value, error, words):
    with pytest.raises(error, match=words):
        L.Trainer(profiler=value)

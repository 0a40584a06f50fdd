"""Loggers: TensorBoardLogger read back with tensorboard's own reader, several loggers at once, versions that do
not collide when runs start together, and the errors for a missing package or a bad value."""

from __future__ import annotations

import csv
import multiprocessing
import os
import sys

import pytest
import torch

import fulmen as L
from tests.models import LogsLosses
from fulmen.loggers import CSVLogger, MLFlowLogger, TensorBoardLogger, WandbLogger
from tests.tb_read import read_events

pytest.importorskip("tensorboard")


class Logged(LogsLosses):
    def __init__(self, width: int = 32, tag: str = "a") -> None:
        super().__init__()
        self.save_hyperparameters()
        self.example_input_array = torch.zeros(2, 32)


def _fit(logger, **kwargs):
    trainer = L.Trainer(max_epochs=2, limit_train_batches=4, limit_val_batches=2, log_every_n_steps=1,
                        logger=logger, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, **kwargs)
    trainer.fit(Logged())
    return trainer


def test_tensorboard_logger_writes_scalars_hparams_and_graph(tmp_path):
    logger = TensorBoardLogger(tmp_path, name="exp", version="run-a", log_graph=True, prefix="p", sub_dir="events")
    trainer = _fit(logger)
    assert logger.log_dir == str(tmp_path / "exp" / "run-a" / "events") == trainer.log_dir
    events = read_events(logger.log_dir)
    assert [step for step, _ in events["scalars"]["p-train_loss"]] == list(range(8))
    assert len(events["scalars"]["p-val_loss"]) == 2 and "p-epoch" in events["scalars"]
    assert events["hparams"] == {"width": 32.0, "tag": "a"} and events["metrics"] == ["hp_metric"]
    assert events["graph"]  # traced from example_input_array
    assert (tmp_path / "exp" / "run-a" / "events" / "hparams.yaml").read_text() == "width: 32\ntag: a\n"


def test_hparams_with_metrics_and_nested_values(tmp_path):
    logger = TensorBoardLogger(tmp_path, default_hp_metric=False)
    logger.log_hyperparams({"opt": {"lr": 0.5, "name": "sgd"}, "layers": [1, 2]}, metrics={"best": 0.25})
    logger.log_metrics({"pair": {"a": 1.0, "b": 2.0}}, step=3)
    logger.finalize("success")
    events = read_events(logger.log_dir)
    assert events["hparams"] == {"opt/lr": 0.5, "opt/name": "sgd", "layers": "[1, 2]"}
    assert events["metrics"] == ["best"] and events["scalars"]["best"] == [(0, 0.25)]
    with pytest.raises(ValueError, match=r"'bad' = 'text'"):
        logger.log_metrics({"bad": "text"})
    quiet = TensorBoardLogger(tmp_path, name="quiet", default_hp_metric=False)
    quiet.log_hyperparams({"x": 1})  # no metrics: nothing for the HPARAMS tab, but hparams.yaml is kept
    quiet.finalize("success")
    assert read_events(quiet.log_dir)["hparams"] == {} and os.path.exists(os.path.join(quiet.log_dir, "hparams.yaml"))


def test_several_loggers_receive_the_same_metrics(tmp_path):
    csv_logger, tb_logger = CSVLogger(tmp_path, name="csv"), TensorBoardLogger(tmp_path, name="tb")
    trainer = _fit([csv_logger, tb_logger])
    assert trainer.loggers == [csv_logger, tb_logger] and trainer.logger is csv_logger
    with open(os.path.join(csv_logger.log_dir, "metrics.csv"), newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["train_loss"]]
    written = read_events(tb_logger.log_dir)["scalars"]["train_loss"]
    assert [int(r["step"]) for r in rows] == [step for step, _ in written]
    assert [float(r["train_loss"]) for r in rows] == pytest.approx([v for _, v in written])


def test_default_logger_is_tensorboard_with_slurm_job_version(tmp_path, monkeypatch):
    assert isinstance(L.Trainer(default_root_dir=tmp_path).logger, TensorBoardLogger)
    monkeypatch.setenv("SLURM_JOB_ID", "777")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    assert L.Trainer(default_root_dir=tmp_path).logger.version == 777


def test_missing_tensorboard_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # what Python does for a package that is not installed
    with pytest.raises(ModuleNotFoundError, match=r"fulmen\[tensorboard\]"):
        TensorBoardLogger(tmp_path)
    assert isinstance(L.Trainer(default_root_dir=tmp_path).logger, CSVLogger)  # the default falls back to CSV


@pytest.mark.parametrize("package, make", [("mlflow", lambda: MLFlowLogger()),
                                           ("wandb", lambda: WandbLogger(offline=True))])
def test_missing_logger_packages_name_their_extra(monkeypatch, package, make):
    monkeypatch.setitem(sys.modules, package, None)
    with pytest.raises(ModuleNotFoundError, match=rf"fulmen\[{package}\]"):
        make()


def _claim(kind, root, barrier, out):
    barrier.wait()  # every process asks for its version at the same moment
    logger = (CSVLogger if kind == "csv" else TensorBoardLogger)(root)
    out.put(logger.version)


@pytest.mark.parametrize("kind", ["csv", "tb"])
def test_runs_starting_together_get_different_versions(tmp_path, kind):
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(6), ctx.Queue()
    procs = [ctx.Process(target=_claim, args=(kind, str(tmp_path), barrier, out)) for _ in range(6)]
    for p in procs:
        p.start()
    versions = sorted(out.get(timeout=600) for _ in procs)
    for p in procs:
        p.join(timeout=600)
    assert versions == list(range(6))
    assert sorted(os.listdir(tmp_path / "lightning_logs")) == [f"version_{i}" for i in range(6)]


def test_hparams_yaml_reads_as_lightning_writes_it(tmp_path):
    """Plain keys and strings (``hidden: 64``), quoted only where YAML would read something else; floats that YAML
    reads back as floats (1.0e-05, .nan, .inf), not as strings."""
    import yaml

    from fulmen.loggers import CSVLogger

    params = {"hidden": 64, "name": "resnet", "act": "torch.nn.ReLU", "lr": 1e-5, "big": 1e20, "bad": float("inf"),
              "yes": "no", "two words": "a b", "version": "1.5", "nested": {"a": [1, 2]}, "none": None}
    logger = CSVLogger(tmp_path)
    logger.log_hyperparams(params)
    logger.save()
    text = (tmp_path / "lightning_logs" / "version_0" / "hparams.yaml").read_text()
    assert "hidden: 64\n" in text and "name: resnet\n" in text and "act: torch.nn.ReLU\n" in text
    assert "lr: 1.0e-05\n" in text and '"yes": "no"\n' in text
    assert yaml.safe_load(text) == params

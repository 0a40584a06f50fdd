"""MLFlowLogger against a real `mlflow server` on 127.0.0.1 (SQLite backend) and against a file store, read back
with MlflowClient."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml

import fulmen as L
from fulmen.callbacks import ModelCheckpoint
from tests.models import LogsLosses

pytest.importorskip("mlflow")
from fulmen.loggers import MLFlowLogger  # noqa: E402


class Logged(LogsLosses):
    def __init__(self, lr: float = 0.1, opt: dict | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlflow")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mlflow_cli = os.path.join(os.path.dirname(sys.executable), "mlflow")
    proc = subprocess.Popen([mlflow_cli, "server", "--host", "127.0.0.1", "--port", str(port),
                             "--backend-store-uri", f"sqlite:///{folder}/db.sqlite",
                             "--default-artifact-root", str(folder / "artifacts"), "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600  # its start (gunicorn, the database migrations) is slow on a busy machine
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as reply:
                if reply.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("mlflow server did not start")
        time.sleep(0.5)
    yield uri
    proc.terminate()
    try:
        proc.wait(timeout=300)
    except subprocess.TimeoutExpired:  # a server that ignores SIGTERM while busy: the tests are done with it
        proc.kill()
        proc.wait()


def _fit(logger, tmp_path, **kwargs):
    trainer = L.Trainer(max_epochs=2, limit_train_batches=4, limit_val_batches=2, log_every_n_steps=1, logger=logger,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path, **kwargs)
    trainer.fit(Logged(opt={"name": "sgd", "momentum": 0.9}))
    return trainer


def test_metrics_params_and_checkpoints_reach_the_server(server, tmp_path):
    from mlflow.tracking import MlflowClient

    logger = MLFlowLogger(experiment_name="fulmen-test", run_name="first", tracking_uri=server, tags={"team": "a"},
                          log_model=True)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val_loss", save_top_k=2)
    trainer = _fit(logger, tmp_path, callbacks=[checkpoint])
    client = MlflowClient(server)
    run = client.get_run(logger.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["mlflow.runName"] == "first"
    assert run.data.tags["team"] == "a"
    assert run.data.params == {"lr": "0.1", "opt/name": "sgd", "opt/momentum": "0.9"}
    history = client.get_metric_history(logger.run_id, "train_loss")
    assert [m.step for m in history] == list(range(8))
    assert [m.step for m in client.get_metric_history(logger.run_id, "val_loss")] == [3, 7]
    assert run.data.metrics["epoch"] == 1
    uploaded = {a.path for a in client.list_artifacts(logger.run_id) if a.is_dir}
    kept = {os.path.splitext(os.path.basename(p))[0] for p in checkpoint.best_k_models}
    assert uploaded == kept and len(kept) == 2  # Lightning's layout: one folder per checkpoint, named by its stem
    best = os.path.splitext(os.path.basename(checkpoint.best_model_path))[0]
    for stem in kept:
        files = {os.path.basename(a.path) for a in client.list_artifacts(logger.run_id, stem)}
        assert files == {f"{stem}.ckpt", "metadata.yaml", "aliases.txt"}
        folder = client.download_artifacts(logger.run_id, stem, str(tmp_path / "down"))
        metadata = yaml.safe_load(open(os.path.join(folder, "metadata.yaml")))
        assert metadata["original_filename"] == f"{stem}.ckpt" and isinstance(metadata["score"], float)
        assert metadata["Checkpoint"]["monitor"] == "val_loss" and metadata["Checkpoint"]["save_top_k"] == 2
        aliases = open(os.path.join(folder, "aliases.txt")).read()
        assert aliases == (str(["latest", "best"]) if stem == best else str(["latest"]))
    # mlflow's context tags, which the UI shows as the run's source and creator
    assert run.data.tags["mlflow.user"] and run.data.tags["mlflow.source.name"]
    assert run.data.tags["mlflow.source.type"] == "LOCAL"
    assert logger.name == run.info.experiment_id and logger.version == run.info.run_id
    assert trainer.logger is logger


def test_failed_run_and_bad_metric_names(server, tmp_path):
    from mlflow.tracking import MlflowClient

    class Crash(Logged):
        def training_step(self, batch, batch_idx):
            if batch_idx == 2:
                raise RuntimeError("boom")
            return super().training_step(batch, batch_idx)

    logger = MLFlowLogger(experiment_name="fulmen-test", tracking_uri=server)
    trainer = L.Trainer(max_epochs=1, limit_train_batches=4, log_every_n_steps=1, logger=logger,
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(Crash())
    client = MlflowClient(server)
    assert client.get_run(logger.run_id).info.status == "FAILED"
    with pytest.warns(RuntimeWarning, match=r"'acc@top\(1\)'.*logged as 'acctop1'"):
        logger.log_metrics({"acc@top(1)": 0.5}, step=3)
    assert [(m.step, m.value) for m in client.get_metric_history(logger.run_id, "acctop1")] == [(3, 0.5)]


def test_file_store(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # recent MLflow asks for this to use a folder store
    logger = MLFlowLogger(save_dir=str(tmp_path / "mlruns"))
    _fit(logger, tmp_path, enable_checkpointing=False)
    assert logger.save_dir == str(tmp_path / "mlruns")
    client = MlflowClient(f"file:{tmp_path / 'mlruns'}")
    assert client.get_experiment(logger.experiment_id).name == "lightning_logs"
    assert len(client.get_metric_history(logger.run_id, "train_loss")) == 8

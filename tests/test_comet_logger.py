"""CometLogger with the real comet_ml package in its offline mode: the experiment archive Comet writes is read
back (its messages file holds every metric and parameter as logged)."""

from __future__ import annotations

import glob
import json
import pickle
import zipfile

import pytest

import fulmen as L
from tests.models import LogsLosses

pytest.importorskip("comet_ml")
from fulmen.loggers import CometLogger  # noqa: E402

# Keep the offline archive to what the run logs: no captured output, code, environment or system metrics.
QUIET = dict(auto_output_logging=False, log_code=False, log_git_metadata=False, log_git_patch=False,
             log_env_details=False, log_env_host=False, log_env_gpu=False, log_env_cpu=False,
             auto_metric_logging=False, auto_param_logging=False, display_summary_level=0)


class Logged(LogsLosses):
    def __init__(self, lr: float = 0.1, opt: dict | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()


def _messages(folder) -> list[dict]:
    archives = glob.glob(f"{folder}/*.zip")
    assert len(archives) == 1, archives
    with zipfile.ZipFile(archives[0]) as archive:
        return [json.loads(line) for line in archive.read("messages.json").decode().splitlines()]


def test_offline_experiment_holds_the_metrics_and_hyperparameters(tmp_path):
    logger = CometLogger(online=False, project="fulmen-test", offline_directory=str(tmp_path / "comet"),
                         prefix="run1", **QUIET)
    trainer = L.Trainer(max_epochs=2, limit_train_batches=4, limit_val_batches=2, log_every_n_steps=1,
                        logger=logger, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)
    trainer.fit(Logged(opt={"name": "sgd", "momentum": 0.9}))
    key = logger.version
    assert logger.name == "fulmen-test" and logger.save_dir == str(tmp_path / "comet")
    # The run does not end the experiment: it is still usable after fit, and ends when the user ends it.
    logger.experiment.log_other("after", "fit")
    logger.experiment.end()
    messages = _messages(tmp_path / "comet")
    metrics = [m["payload"]["metric"] for m in messages if m["type"] == "metric_msg"]
    train = [(m["step"], m["epoch"]) for m in metrics if m["metricName"] == "run1_train_loss"]
    assert train == [(step, step // 4) for step in range(8)]
    val = [(m["step"], m["epoch"]) for m in metrics if m["metricName"] == "run1_val_loss"]
    assert val == [(3, 0), (7, 1)]
    assert not any(m["metricName"].endswith("epoch") for m in metrics)  # the epoch is kept beside the step
    params = {m["payload"]["param"]["paramName"]: m["payload"]["param"]["paramValue"]
              for m in messages if m["type"] == "parameter_msg" and m["payload"]["param"]["source"] == "manual"}
    assert params == {"lr": 0.1, "opt|name": "sgd", "opt|momentum": 0.9}
    others = {m["payload"]["key"]: m["payload"]["value"] for m in messages if m["type"] == "log_other"}
    assert others["Created from"] == "fulmen" and others["after"] == "fit"
    assert key == logger.version


def test_pickled_logger_drops_the_experiment_and_keeps_its_key(tmp_path):
    logger = CometLogger(online=False, offline_directory=str(tmp_path / "comet"), **QUIET)
    key = logger.version
    copy = pickle.loads(pickle.dumps(logger))
    assert copy._experiment is None and copy._experiment_key == key
    logger.experiment.end()


def test_old_argument_names_still_work(tmp_path):
    logger = CometLogger(offline=True, project_name="legacy", save_dir=str(tmp_path / "old"), **QUIET)
    assert logger.name == "legacy" and logger.save_dir == str(tmp_path / "old")
    logger.experiment.end()
    assert glob.glob(f"{tmp_path / 'old'}/*.zip")
    with pytest.raises(ValueError, match="mode='sometimes'"):
        CometLogger(online=False, mode="sometimes", **QUIET)

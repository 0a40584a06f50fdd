"""WandbLogger in offline mode, read back from the run file wandb writes."""

from __future__ import annotations

import pytest

import fulmen as L
from fulmen.callbacks import ModelCheckpoint
from tests.models import LogsLosses

pytest.importorskip("wandb")
from fulmen.loggers import WandbLogger  # noqa: E402
from tests.wandb_read import wait_for_run  # noqa: E402


@pytest.fixture(autouse=True)
def _quiet_wandb(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    yield
    import wandb

    if wandb.run is not None:
        wandb.finish()


class Logged(LogsLosses):
    def __init__(self, lr: float = 0.1, act=None) -> None:
        super().__init__()
        self.save_hyperparameters()


def _fit(logger, tmp_path, **kwargs):
    trainer = L.Trainer(max_epochs=2, limit_train_batches=4, limit_val_batches=2, log_every_n_steps=1, logger=logger,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path, **kwargs)
    model = Logged(act=torch_relu)
    trainer.fit(model)
    return trainer, model


def torch_relu(x):
    return x


def test_offline_run_holds_config_and_metrics_on_the_step_axis(tmp_path):
    logger = WandbLogger(name="first", save_dir=tmp_path, offline=True, project="fulmen-test", prefix="p")
    trainer, model = _fit(logger, tmp_path, enable_checkpointing=False)
    run_id = logger.version
    logger.experiment.finish()
    run = wait_for_run(str(tmp_path), lambda r: sum("p-val_loss" in row for row in r["history"]) >= 2)
    assert (run["project"], run["id"], run["name"]) == ("fulmen-test", run_id, "first")
    assert run["config"] == {"lr": 0.1, "act": "torch_relu"}  # a function is stored by its name
    train = [(row["trainer/global_step"], row["p-train_loss"]) for row in run["history"] if "p-train_loss" in row]
    assert [step for step, _ in train] == list(range(8))
    assert [row["trainer/global_step"] for row in run["history"] if "p-val_loss" in row] == [3, 7]
    assert logger.name == "fulmen-test" and trainer.logger is logger


def test_watch_logs_gradient_histograms(tmp_path):
    logger = WandbLogger(save_dir=tmp_path, offline=True)
    model = Logged()
    logger.watch(model, log_freq=1)
    trainer = L.Trainer(max_steps=3, limit_val_batches=0, log_every_n_steps=1, logger=logger,
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(model)
    logger.experiment.finish()
    wanted = {"gradients/layer.weight/bins", "gradients/layer.bias/values"}
    run = wait_for_run(str(tmp_path), lambda r: wanted <= {k for row in r["history"] for k in row})
    keys = {k for row in run["history"] for k in row}
    # a histogram is a nested value: its bins and counts under the parameter's name
    assert wanted <= keys


def test_log_model_all_records_each_checkpoint_as_an_artifact(tmp_path):
    logger = WandbLogger(save_dir=tmp_path, log_model="all", mode="offline")  # offline files, artifacts recorded
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val_loss", save_top_k=2)
    _fit(logger, tmp_path, callbacks=[checkpoint])
    run_id = logger.version
    logger.experiment.finish()
    artifacts = wait_for_run(str(tmp_path), lambda r: len(r["artifacts"]) >= 2)["artifacts"]
    assert len(artifacts) == 2 and all(name == f"model-{run_id}" and kind == "model" for name, kind, _ in artifacts)
    assert "latest" in artifacts[-1][2]


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="offline=True, log_model=True"):
        WandbLogger(save_dir=tmp_path, offline=True, log_model=True)
    with pytest.raises(ValueError, match="log_model='some'"):
        WandbLogger(save_dir=tmp_path, log_model="some")


def test_a_default_logger_adds_no_warning_of_wandbs(tmp_path, capfd):
    """wandb warns "The anonymous setting has no effect" whenever the setting is passed; it is passed only when
    the user asks for anonymous logging."""
    logger = WandbLogger(save_dir=tmp_path, offline=True)
    _fit(logger, tmp_path, enable_checkpointing=False)
    logger.experiment.finish()
    captured = capfd.readouterr()
    assert "anonymous" not in captured.err + captured.out

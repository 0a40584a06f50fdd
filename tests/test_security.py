"""Loading a checkpoint, an hparams.yaml or a config runs no code from it; names built from logged values stay in
their folder; files get the user's umask; credentials in the environment stay out of what is logged and saved."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import fulmen
from fulmen.callbacks import ModelCheckpoint
from fulmen.checkpoint import io
from fulmen.demos.boring_classes import BoringModel

ROOT = Path(__file__).resolve().parents[1]


class _Payload:
    """What a malicious checkpoint holds: unpickling it calls a function of the attacker's choice."""

    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_a_pickled_payload_is_refused_with_the_opt_in_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"state_dict": BoringModel().state_dict(), "hyper_parameters": {}, "x": _Payload()}, "evil.ckpt")
    for load in (lambda: BoringModel.load_from_checkpoint("evil.ckpt"),
                 lambda: io.load("evil.ckpt"),
                 lambda: fulmen.Trainer(logger=False, max_steps=1).fit(BoringModel(), ckpt_path="evil.ckpt")):
        with pytest.raises(Exception, match="weights_only=False"):
            load()
    assert not (tmp_path / "PWNED").exists()


def test_a_yaml_file_with_python_tags_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hparams.yaml").write_text("a: !!python/object/apply:os.system ['touch PWNED']\n")
    torch.save({"state_dict": BoringModel().state_dict(), "hyper_parameters": {}}, "ok.ckpt")
    with pytest.raises(ValueError, match="Python object tag.*plain YAML"):
        BoringModel.load_from_checkpoint("ok.ckpt", hparams_file="hparams.yaml")
    assert not (tmp_path / "PWNED").exists()


def test_a_cli_config_with_python_tags_is_refused(tmp_path):
    pytest.importorskip("jsonargparse")
    (tmp_path / "evil.yaml").write_text("model:\n  hidden: !!python/object/apply:os.system ['touch PWNED']\n")
    code = ("import sys; from fulmen.cli import LightningCLI; from tests.cli_models import Model\n"
            "LightningCLI(Model, run=False, args=['--config', 'evil.yaml'])")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 2 and "python/object" in done.stderr
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("name, value", [("val/loss", 0.5), ("../../escape", 1.0), ("a\0b", 2.0)])
def test_checkpoint_names_from_metrics_stay_in_their_folder(tmp_path, name, value):
    callback = ModelCheckpoint(dirpath=str(tmp_path), filename="{epoch}-{" + name + ":.1f}")
    path = Path(callback.format_checkpoint_name({"epoch": 1, name: torch.tensor(value)}))
    assert path.parent == tmp_path and "\0" not in str(path) and ".." not in path.name


def test_a_metric_named_like_a_path_saves_beside_the_others(tmp_path):
    class Logs(BoringModel):
        def validation_step(self, batch, batch_idx):
            self.log("val/loss", self.step(batch))

    callback = ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), monitor="val/loss", filename="{epoch}-{val/loss:.3f}")
    fulmen.Trainer(logger=False, max_epochs=1, limit_train_batches=2, limit_val_batches=2, callbacks=[callback],
                   enable_progress_bar=False, enable_model_summary=False).fit(Logs())
    saved = [p for p in (tmp_path / "ckpt").iterdir()]
    assert len(saved) == 1 and saved[0].name.startswith("epoch=0-val_loss=") and saved[0].is_file()


def test_files_are_created_with_the_users_umask(tmp_path):
    code = ("import os; os.umask(0o027)\n"
            "from fulmen.checkpoint import io\n"
            f"io.atomic_save({{'a': 1}}, {str(tmp_path / 'x.ckpt')!r})\n")
    subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)
    assert (tmp_path / "x.ckpt").stat().st_mode & 0o777 == 0o640


def test_credentials_in_the_environment_stay_out_of_logs_and_configs(tmp_path, monkeypatch):
    pytest.importorskip("jsonargparse")
    secrets = {"WANDB_API_KEY": "wandb-secret-1234", "MLFLOW_TRACKING_PASSWORD": "mlflow-secret-5678",
               "MLFLOW_TRACKING_TOKEN": "mlflow-token-9012"}
    for key, value in secrets.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sys, "argv", ["prog"])
    from fulmen.cli import LightningCLI
    from tests.cli_models import Model

    LightningCLI(Model, args=["fit", f"--trainer.default_root_dir={tmp_path}", "--trainer.max_steps=2",
                              "--trainer.logger=CSVLogger", f"--trainer.logger.save_dir={tmp_path}",
                              "--trainer.enable_progress_bar=false"],
                 parser_kwargs={"fit": {"default_env": True}})
    written = "".join(p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file() and p.suffix in
                      (".yaml", ".csv"))
    assert "hidden" in written  # the files were read
    for value in secrets.values():
        assert value not in written
    checkpoint = next(tmp_path.rglob("*.ckpt"))
    assert not any(v in repr(torch.load(checkpoint, weights_only=True)) for v in secrets.values())

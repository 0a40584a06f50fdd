"""Each example runs end to end, shortened, as a user would start it (a subprocess from the repository root's layout),
and does what its docstring promises."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHORT = ["--trainer.max_epochs=2", "--trainer.enable_progress_bar=false"]


def run(args, cwd, timeout=900, **env):
    """Run ``python args...`` in ``cwd`` with the repository importable; returns stdout, failing on a bad exit."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore", **env}
    done = subprocess.run([sys.executable, *args], cwd=cwd, env=environment, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def digits_config():
    return str(ROOT / "examples" / "digits" / "config.yaml")


def test_digits_demo(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("jsonargparse")
    out = run(["-m", "examples.digits.main", "fit", "--config", digits_config(), *SHORT], tmp_path)
    accuracy = float(out.split("test accuracy: ")[1].split()[0])
    assert accuracy > 0.8  # two epochs; the full demo reaches above 0.95
    run_dir = tmp_path / "lightning_logs" / "version_0"
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["trainer"]["max_epochs"] == 2 and saved["seed_everything"] == 0
    with open(run_dir / "metrics.csv") as f:
        assert {"val_loss", "val_acc", "test_acc", "lr-Adam"} <= set(next(csv.DictReader(f)))
    assert (run_dir / "metrics.png").stat().st_size > 0
    assert list((run_dir / "checkpoints").glob("*.ckpt"))
    assert list((tmp_path / "tensorboard" / "version_0").glob("events.out.tfevents.*"))


def test_digits_config_with_the_fulmen_command(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("jsonargparse")
    shutil.copytree(ROOT / "examples", tmp_path / "examples")  # the command resolves class paths from here
    run(["-m", "fulmen.commands", "fit", "--config", "examples/digits/config.yaml", "--trainer.max_epochs=1",
         "--trainer.enable_progress_bar=false"], tmp_path)
    assert list((tmp_path / "lightning_logs" / "version_0" / "checkpoints").glob("*.ckpt"))


def test_digits_with_ddp_on_two_processes(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("jsonargparse")
    out = run(["-m", "examples.digits.main", "fit", "--config", digits_config(), "--config",
               str(ROOT / "examples" / "ddp" / "ddp.yaml"), *SHORT], tmp_path)
    assert out.count("test accuracy:") == 1  # printed by rank 0 only
    saved = yaml.safe_load((tmp_path / "lightning_logs" / "version_0" / "config.yaml").read_text())
    assert saved["trainer"]["devices"] == 2 and saved["trainer"]["strategy"] == "ddp"


def test_digits_with_ddp_under_torchrun(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("jsonargparse")
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore", "PYTHON": sys.executable}
    done = subprocess.run(["bash", "examples/ddp/torchrun.sh", *SHORT], cwd=tmp_path, env=environment,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("test accuracy:") == 1


def test_char_gpt(tmp_path):
    out = run([str(ROOT / "examples" / "char_gpt" / "train.py"), "--max-steps", "12", "--root", str(tmp_path),
               "--out", str(tmp_path / "sample.txt")], tmp_path)
    assert "characters/s" in out and "nan characters" not in out
    sample = (tmp_path / "sample.txt").read_text()
    assert sample.startswith("def ") and len(sample) == 304


def test_gan_manual_optimization(tmp_path):
    pytest.importorskip("matplotlib")
    out = run([str(ROOT / "examples" / "gan" / "train.py"), "--epochs", "15", "--root", str(tmp_path), "--plot",
               str(tmp_path / "ring.png")], tmp_path)
    covered = int(out.split("the generator covers ")[1].split()[0])
    assert covered >= 6  # the generator spreads over the ring rather than collapsing onto one mode
    assert (tmp_path / "ring.png").stat().st_size > 0


def test_mnist_migration_runs_on_digits(tmp_path):
    pytest.importorskip("sklearn")
    out = run([str(ROOT / "examples" / "mnist_migration" / "train.py"), "--digits", "--epochs", "3", "--root",
               str(tmp_path)], tmp_path)
    assert float(out.split("test accuracy: ")[1].split()[0]) > 0.9
    source = (ROOT / "examples" / "mnist_migration" / "train.py").read_text()
    assert "import fulmen as pl  # was: import lightning.pytorch as pl" in source

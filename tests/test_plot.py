"""`fulmen plot`: curves from metrics.csv and from TensorBoard events, grouped by metric family, into a PNG."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import fulmen as L
from fulmen.loggers import CSVLogger, TensorBoardLogger
from fulmen.plot import family, find_runs, read_run
from tests.models import LogsLosses

pytest.importorskip("matplotlib")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _fit(logger):
    trainer = L.Trainer(max_epochs=3, limit_train_batches=4, limit_val_batches=2, log_every_n_steps=1, logger=logger,
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(LogsLosses())
    return trainer.log_dir


def _command(*args):
    env = dict(os.environ, PYTHONPATH=ROOT, MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-m", *args], env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("kind", ["csv", "tensorboard"])
def test_plot_a_run(tmp_path, kind):
    logger = CSVLogger(tmp_path) if kind == "csv" else TensorBoardLogger(tmp_path)
    log_dir = _fit(logger)
    series = read_run(log_dir)
    assert [x for x, _ in series["train_loss"]] == list(range(12))
    assert [x for x, _ in series["val_loss"]] == [3, 7, 11]
    assert [x for x, _ in read_run(log_dir, "epoch")["val_loss"]] == [0, 1, 2]
    done = _command("fulmen.commands", "plot", log_dir)
    assert done.returncode == 0, done.stderr
    png = done.stdout.strip()
    assert png == os.path.join(log_dir, "metrics.png")
    import matplotlib.image

    height, width, _ = matplotlib.image.imread(png).shape
    assert width > 400 and height > 300


def test_several_runs_in_one_picture(tmp_path):
    for _ in range(2):
        _fit(CSVLogger(tmp_path))
    runs = find_runs([str(tmp_path / "lightning_logs")])
    assert [os.path.basename(r) for r in runs] == ["version_0", "version_1"]
    out = tmp_path / "both.png"
    done = _command("fulmen.plot", str(tmp_path / "lightning_logs"), "-o", str(out), "--x", "epoch")
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 10_000


def test_families_and_errors(tmp_path):
    assert [family(n) for n in ("train_loss", "val_loss", "train_loss_epoch", "val/acc", "lr-Adam", "loss_val")] == \
        ["loss", "loss", "loss", "acc", "lr-Adam", "loss"]
    done = _command("fulmen.plot", str(tmp_path / "missing"))
    assert done.returncode == 2 and "is not a folder" in done.stderr
    done = _command("fulmen.commands", "draw")
    assert done.returncode == 2 and "unknown subcommand 'draw'" in done.stderr


def test_a_run_shorter_than_log_every_n_steps_says_why_training_has_no_curve(tmp_path):
    """Two steps with log_every_n_steps=50: the logger got the validation values only. The figure draws them and
    says, under the panels (and in the PNG's description), why there is no training curve."""
    from PIL import Image

    trainer = L.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=2, logger=CSVLogger(tmp_path),
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(LogsLosses())
    assert "train_loss" not in read_run(trainer.log_dir)
    done = _command("fulmen.commands", "plot", trainer.log_dir)
    assert done.returncode == 0, done.stderr
    assert "log_every_n_steps" in done.stderr
    description = Image.open(os.path.join(trainer.log_dir, "metrics.png")).text.get("Description", "")
    assert "No training values were logged" in description and "log_every_n_steps" in description

    full = _fit(CSVLogger(tmp_path / "full"))  # with training values: no note
    done = _command("fulmen.commands", "plot", full)
    assert done.returncode == 0 and "log_every_n_steps" not in done.stderr, done.stderr
    assert "Description" not in Image.open(os.path.join(full, "metrics.png")).text

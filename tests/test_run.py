"""`fulmen run script.py ARGS`: unchanged Lightning programs (tests/lightning_programs/, shipped as their users write
them) run on fulmen, with the results pytorch-lightning gives them; on several processes too; and what fulmen lacks
fails with an error that names it."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_ddp import clean_env

PROGRAMS = Path(__file__).parent / "lightning_programs"


def run(args, cwd, timeout=900, on="fulmen"):
    prefix = [sys.executable, "-m", "fulmen", "run"] if on == "fulmen" else \
        [sys.executable, str(PROGRAMS / "run_on_lightning.py")]
    env = clean_env(PYTHONPATH=str(Path(__file__).parents[1]))
    return subprocess.run(prefix + [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_a_lightning_program_runs_unchanged_with_lightnings_results(tmp_path):
    pytest.importorskip("pytorch_lightning")
    results = {}
    for on in ("fulmen", "lightning"):
        folder = tmp_path / on
        folder.mkdir()
        proc = run([PROGRAMS / "autoencoder.py", "--root", folder], folder, on=on)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[on] = json.loads((folder / "result.json").read_text())
    ours, theirs = results["fulmen"], results["lightning"]
    assert ours["trainer"] == "fulmen.trainer.trainer" and theirs["trainer"].startswith("pytorch_lightning")
    assert ours["global_step"] == theirs["global_step"] == 18
    assert ours["val_loss"] == pytest.approx(theirs["val_loss"], rel=1e-5)
    assert ours["weight_sum"] == pytest.approx(theirs["weight_sum"], rel=1e-5)
    assert Path(ours["best"]).name == Path(theirs["best"]).name
    with open(tmp_path / "fulmen" / "lightning_logs" / "version_0" / "metrics.csv") as f:
        assert "val_loss" in next(csv.reader(f))


def test_a_lightning_cli_program_and_its_config_run_unchanged(tmp_path):
    pytest.importorskip("jsonargparse")
    proc = run([PROGRAMS / "cli_program.py", "fit", "--config", PROGRAMS / "cli_config.yaml"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("TRAINER"))
    # The config's class_path strings name lightning.pytorch classes: they resolve to fulmen's.
    assert "fulmen.trainer.trainer 24" in line  # 2 epochs of 12 batches
    assert "fulmen.callbacks.early_stopping.EarlyStopping" in line and "lr_monitor.LearningRateMonitor" in line
    assert (tmp_path / "logs" / "lightning_logs" / "version_0" / "metrics.csv").exists()
    assert "lightning.pytorch.callbacks.EarlyStopping" in (tmp_path / "logs" / "lightning_logs" / "version_0" /
                                                          "config.yaml").read_text()


def test_the_processes_of_a_ddp_run_map_lightning_too(tmp_path):
    proc = run([PROGRAMS / "autoencoder.py", "--root", tmp_path, "--devices", 2], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["trainer"] == "fulmen.trainer.trainer" and result["global_step"] == 9  # 96 samples per process


def test_the_mnist_example_in_its_lightning_form(tmp_path):
    # examples/mnist_migration/train.py is Lightning's getting-started classifier with its import line changed; put
    # Lightning's line back and fulmen run takes the program as Lightning's users have it.
    pytest.importorskip("sklearn")
    source = (PROGRAMS.parents[1] / "examples" / "mnist_migration" / "train.py").read_text()
    changed = "import fulmen as pl  # was: import lightning.pytorch as pl"
    assert changed in source
    script = tmp_path / "train.py"
    script.write_text(source.replace(changed, "import lightning.pytorch as pl"))
    proc = run([script, "--digits", "--epochs", 2, "--root", tmp_path], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert float(proc.stdout.split("test accuracy: ")[1].split()[0]) > 0.8


def test_processes_started_by_spawn_map_lightning_too(tmp_path):
    # ddp_spawn's ranks and spawned DataLoader workers import the program again before they unpickle its model.
    proc = run([PROGRAMS / "autoencoder.py", "--root", tmp_path, "--devices", 2, "--strategy", "ddp_spawn",
                "--workers", 1], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["trainer"] == "fulmen.trainer.trainer" and result["global_step"] == 9


@pytest.mark.parametrize("line, words", [
    ("from lightning.pytorch.loggers import LitLogger", "lightning.pytorch.loggers.LitLogger is not supported by "
                                                        "fulmen yet"),
    ("import pytorch_lightning.strategies.xla", "pytorch_lightning.strategies.xla is not supported by fulmen yet"),
])
def test_what_fulmen_lacks_is_named(tmp_path, line, words):
    script = tmp_path / "uses.py"
    script.write_text(line + "\n")
    proc = run([script], tmp_path)
    assert proc.returncode == 1 and words in proc.stderr, proc.stderr[-2000:]


def test_lightning_fabric_stays_as_installed(tmp_path):
    script = tmp_path / "fabric.py"
    script.write_text("import lightning_fabric, lightning.pytorch as L, pytorch_lightning as pl\n"
                      "print(lightning_fabric.__file__, L.__name__, pl is L)\n")
    proc = run([script], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    fabric_file, name, same = proc.stdout.split()
    assert "site-packages" in fabric_file and name == "fulmen" and same == "True"


def test_the_command_explains_itself(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fulmen", "run", "--help"], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1])))
    assert proc.returncode == 0 and "lightning.fabric stays as installed" in proc.stdout

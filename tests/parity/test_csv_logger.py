"""CSVLogger writes the same metrics.csv and hparams.yaml as pytorch-lightning's (the default logger without
TensorBoard installed)."""

from __future__ import annotations

import csv
import os

import pytest
import torch

from tests.parity.test_metrics import make_model

pl_mod = pytest.importorskip("pytorch_lightning")
yaml = pytest.importorskip("yaml")


def run(framework: str, root: str) -> str:
    torch.manual_seed(0)
    pl, Model = make_model(framework)
    logger = pl.loggers.CSVLogger(save_dir=root)

    class WithHparams(Model):
        def __init__(self, hidden: int = 4, name: str = "mlp", ratios=(0.5, 1.0)):
            super().__init__()
            self.save_hyperparameters()

    trainer = pl.Trainer(default_root_dir=root, logger=logger, max_epochs=2, log_every_n_steps=2, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(WithHparams(hidden=8))
    return trainer.log_dir


def test_csv_logger_matches(tmp_path):
    dirs = {fw: run(fw, str(tmp_path / fw)) for fw in ("fulmen", "pytorch_lightning")}
    assert dirs["fulmen"] == str(tmp_path / "fulmen" / "lightning_logs" / "version_0")
    tables = {}
    for fw, log_dir in dirs.items():
        with open(os.path.join(log_dir, "metrics.csv"), newline="") as f:
            tables[fw] = list(csv.DictReader(f))
    ours, theirs = tables["fulmen"], tables["pytorch_lightning"]
    assert list(ours[0]) == list(theirs[0])  # the same sorted columns
    assert len(ours) == len(theirs) and len(ours) > 3
    for a, b in zip(ours, theirs):
        for key in a:
            if a[key] == "" or b[key] == "":
                assert a[key] == b[key], key
            else:
                assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-5, abs=1e-6), key
    # Lightning tags tuples as python/tuple, which only the unsafe loader reads; fulmen writes plain YAML.
    hp = {"fulmen": yaml.safe_load(open(os.path.join(dirs["fulmen"], "hparams.yaml"))),
          "pytorch_lightning": yaml.unsafe_load(open(os.path.join(dirs["pytorch_lightning"], "hparams.yaml")))}
    assert hp["fulmen"]["hidden"] == hp["pytorch_lightning"]["hidden"] == 8
    assert hp["fulmen"]["name"] == "mlp"
    assert list(hp["fulmen"]["ratios"]) == [0.5, 1.0]


def test_second_run_gets_the_next_version(tmp_path):
    import fulmen
    from fulmen.demos.boring_classes import BoringModel

    for expected in ("version_0", "version_1"):
        trainer = fulmen.Trainer(default_root_dir=tmp_path, max_steps=1, limit_val_batches=0,
                                 enable_model_summary=False)
        trainer.fit(BoringModel())
        assert os.path.basename(trainer.log_dir) == expected

"""The default logger with tensorboard installed: fulmen and pytorch-lightning write the same TensorBoard run
(folder, scalar tags, steps and values, hyperparameters), read back with tensorboard's EventAccumulator."""

from __future__ import annotations

import pytest
import torch

from tests.parity.test_metrics import make_model
from tests.tb_read import read_events

pytest.importorskip("pytorch_lightning")
pytest.importorskip("tensorboard")


def run(framework: str, root: str):
    torch.manual_seed(0)
    pl, Model = make_model(framework)

    class WithHparams(Model):
        def __init__(self, hidden: int = 4, name: str = "mlp", opt: dict | None = None):
            super().__init__()
            self.save_hyperparameters()

    trainer = pl.Trainer(default_root_dir=root, max_epochs=2, log_every_n_steps=2, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(WithHparams(hidden=8, opt={"lr": 0.1, "betas": "0.9,0.99"}))
    return trainer


def test_default_tensorboard_logger_matches(tmp_path):
    trainers = {fw: run(fw, str(tmp_path / fw)) for fw in ("fulmen", "pytorch_lightning")}
    for fw, trainer in trainers.items():
        assert type(trainer.logger).__name__ == "TensorBoardLogger"
        assert trainer.log_dir == str(tmp_path / fw / "lightning_logs" / "version_0")
    ours, theirs = (read_events(trainers[fw].log_dir) for fw in ("fulmen", "pytorch_lightning"))
    assert sorted(ours["scalars"]) == sorted(theirs["scalars"]) and "hp_metric" in ours["scalars"]
    for tag, points in theirs["scalars"].items():
        assert [s for s, _ in ours["scalars"][tag]] == [s for s, _ in points], tag
        assert [v for _, v in ours["scalars"][tag]] == pytest.approx([v for _, v in points], rel=1e-5), tag
    assert ours["hparams"] == theirs["hparams"] == {"hidden": 8.0, "name": "mlp", "opt/lr": 0.1,
                                                     "opt/betas": "0.9,0.99"}
    assert ours["metrics"] == theirs["metrics"] == ["hp_metric"]

"""SpikeDetection: the default file, the state a checkpoint keeps, and bad arguments."""

from __future__ import annotations

import json

import pytest
import torch

import fulmen as L
from fulmen.callbacks import SpikeDetection
from fulmen.demos.boring_classes import BoringModel
from fulmen.utilities.exceptions import TrainingSpikeException

LOSSES = [1.0, 0.9, 0.8, 0.85, 0.7, 0.6, 5.0, 0.5]


class Scripted(BoringModel):
    losses = LOSSES

    def training_step(self, batch, batch_idx):
        return self.layer(batch).sum() * 0 + self.losses[batch_idx]


def _trainer(tmp_path, *callbacks):
    return L.Trainer(default_root_dir=tmp_path, max_epochs=1, limit_train_batches=len(LOSSES), limit_val_batches=0,
                     logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                     callbacks=list(callbacks))


def test_spike_stops_the_run_and_lists_the_batches_in_the_root_dir(tmp_path):
    with pytest.raises(TrainingSpikeException, match="batch 6") as err:
        _trainer(tmp_path, SpikeDetection()).fit(Scripted())
    assert err.value.batch_idx == 6
    assert json.loads((tmp_path / "skip_batches.json").read_text()) == [5, 6]


def test_a_resumed_run_keeps_the_window(tmp_path):
    class Mild(Scripted):
        # 2.0 is no spike against the mean of the last three losses (0.72), but would be against 0.6 alone
        losses = [1.0, 0.9, 0.8, 0.85, 0.7, 0.6, 2.0, 0.5]

    class SaveAt4(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if batch_idx == 4:
                trainer.save_checkpoint(tmp_path / "mid.ckpt")

    full = SpikeDetection(window=3)
    _trainer(tmp_path, full, SaveAt4()).fit(Mild())
    state = torch.load(tmp_path / "mid.ckpt", weights_only=True)["callbacks"]["SpikeDetection"]
    assert state["recent"] == pytest.approx([0.8, 0.85, 0.7]) and state["last_val"] == pytest.approx(0.7)
    resumed = SpikeDetection(window=3)
    _trainer(tmp_path, resumed).fit(Mild(), ckpt_path=tmp_path / "mid.ckpt")
    assert resumed.state_dict() == full.state_dict() and full.bad_batches == []


@pytest.mark.parametrize("kwargs, words", [
    (dict(mode="minimum"), "mode='minimum'"), (dict(window=0), "window=0"), (dict(warmup=-1), "warmup=-1"),
])
def test_bad_arguments(kwargs, words):
    with pytest.raises(ValueError, match=words):
        SpikeDetection(**kwargs)

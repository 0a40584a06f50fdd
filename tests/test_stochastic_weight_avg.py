"""StochasticWeightAveraging: it resumes exactly (inside the SWA epochs and inside the batch-norm epoch), its
checkpoints load with weights_only=True, and bad arguments are named."""

from __future__ import annotations

import pytest
import torch

import fulmen as L
from fulmen.callbacks import Callback, StochasticWeightAveraging
from fulmen.demos.boring_classes import BoringModel
from fulmen.utilities.exceptions import MisconfigurationException
from tests.models import quiet_fit, swa_model


class SaveAt(Callback):
    def __init__(self, epoch: int, batch_idx: int) -> None:
        self.epoch, self.batch_idx = epoch, batch_idx

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch_idx):
            trainer.save_checkpoint("mid.ckpt")


def _fit(callbacks, ckpt_path=None, batch_norm=True, **kwargs):
    model = swa_model(BoringModel, batch_norm)()
    return model, quiet_fit(model, callbacks, ckpt_path, **{"max_epochs": 5, "limit_val_batches": 0, **kwargs})


@pytest.mark.parametrize("epoch", [3, 5])  # inside the SWA epochs; inside the batch-norm epoch
def test_resumed_run_ends_with_the_uninterrupted_weights(epoch):
    def swa():
        return StochasticWeightAveraging(swa_lrs=0.05, swa_epoch_start=2, annealing_epochs=2)

    full, full_trainer = _fit([swa(), SaveAt(epoch, 2)])
    checkpoint = torch.load("mid.ckpt", weights_only=True)
    state = checkpoint["callbacks"]["StochasticWeightAveraging"]
    assert state["batch_norm_update"] is (epoch == 5) and state["n_averaged"] == min(epoch, 4) - 1 + 1
    resumed, trainer = _fit([swa()], ckpt_path="mid.ckpt")
    assert trainer.current_epoch == full_trainer.current_epoch == 6 and trainer.max_epochs == 5
    for name, value in full.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name


def test_without_batch_norm_no_extra_epoch_and_the_average_is_kept():
    seen = []

    class Weights(Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            seen.append(pl_module.layer[0].weight.detach().clone())

    model, trainer = _fit([StochasticWeightAveraging(swa_lrs=0.05, swa_epoch_start=3), Weights()],
                          batch_norm=False)
    assert trainer.current_epoch == 5 and trainer.global_step == 30
    # the weights at the start of epochs 3, 4 and 5 (0-based 2..4) are averaged
    torch.testing.assert_close(model.layer[0].weight, torch.stack(seen[2:]).mean(0))


def test_manual_optimization_with_batch_norm_is_refused():
    class Manual(swa_model(BoringModel)):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            return None

    trainer = L.Trainer(max_epochs=2, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[StochasticWeightAveraging(swa_lrs=0.1)])
    with pytest.raises(MisconfigurationException, match="manual optimization"):
        trainer.fit(Manual())


@pytest.mark.parametrize("kwargs, words", [
    (dict(swa_lrs=0.1, swa_epoch_start=0), "swa_epoch_start=0"),
    (dict(swa_lrs=0.1, swa_epoch_start=1.5), "swa_epoch_start=1.5"),
    (dict(swa_lrs=-0.1), "swa_lrs=-0.1"),
    (dict(swa_lrs=1), "swa_lrs=1"),
    (dict(swa_lrs=[0.1, 0]), r"swa_lrs=\[0.1, 0\]"),
    (dict(swa_lrs=0.1, annealing_strategy="cosine"), "annealing_strategy='cosine'"),
    (dict(swa_lrs=0.1, avg_fn=3), "avg_fn=3"),
    (dict(swa_lrs=0.1, device=0), "device=0"),
])
def test_bad_arguments(kwargs, words):
    with pytest.raises(MisconfigurationException, match=words):
        StochasticWeightAveraging(**kwargs)


def test_bad_settings_at_fit_start():
    with pytest.raises(MisconfigurationException, match="max_epochs=-1"):
        _fit([StochasticWeightAveraging(swa_lrs=0.1, swa_epoch_start=0.5)], max_epochs=-1, max_steps=3)
    with pytest.raises(MisconfigurationException, match="has 2 learning rates, but the optimizer has 1"):
        _fit([StochasticWeightAveraging(swa_lrs=[0.1, 0.2], swa_epoch_start=1)])

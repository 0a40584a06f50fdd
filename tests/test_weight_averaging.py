"""Weight averaging resumes exactly: a fit resumed from a mid-epoch checkpoint ends with the same averaged and
trained weights as one never stopped."""

from __future__ import annotations

import torch

from fulmen.callbacks import Callback, EMAWeightAveraging, WeightAveraging
from fulmen.demos.boring_classes import BoringModel
from tests.models import quiet_fit


class FixedData(BoringModel):
    """The demo model with data that does not depend on the global random state (which the sanity check of the
    uninterrupted run, absent from the resumed one, draws from)."""

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.randn(64, 32, generator=torch.Generator().manual_seed(1)),
                                           batch_size=2)

    def val_dataloader(self):
        return torch.utils.data.DataLoader(torch.randn(8, 32, generator=torch.Generator().manual_seed(2)),
                                           batch_size=2)


class SaveAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step and batch_idx % 2 == 1:
            trainer.save_checkpoint("mid.ckpt")


def _fit(callbacks, ckpt_path=None):
    torch.manual_seed(0)
    model = FixedData()
    quiet_fit(model, callbacks, ckpt_path, max_epochs=3, limit_train_batches=6, limit_val_batches=2,
              accumulate_grad_batches=2)
    return model


def test_resumed_average_equals_the_uninterrupted_one():
    for make in (lambda: EMAWeightAveraging(decay=0.8), lambda: WeightAveraging()):
        full = _fit([make(), SaveAt(5)])
        resumed = _fit([make()], ckpt_path="mid.ckpt")
        checkpoint = torch.load("mid.ckpt", weights_only=True)
        assert checkpoint["averaging_state"]["n_averaged"] == 5
        assert not torch.equal(checkpoint["state_dict"]["layer.weight"],
                               checkpoint["current_model_state"]["layer.weight"])
        for name, value in full.state_dict().items():
            assert torch.equal(value, resumed.state_dict()[name]), name


def test_load_from_checkpoint_gives_the_averaged_weights():
    model = _fit([EMAWeightAveraging(decay=0.5), SaveAt(5)])
    checkpoint = torch.load("mid.ckpt", weights_only=True)
    loaded = FixedData.load_from_checkpoint("mid.ckpt")
    assert torch.equal(loaded.layer.weight, checkpoint["state_dict"]["layer.weight"])
    assert not torch.equal(model.layer.weight, checkpoint["current_model_state"]["layer.weight"])

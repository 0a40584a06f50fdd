"""Non-finite losses: Trainer(skip_nonfinite=True) drops the backward of a NaN/inf batch (counted, logged, and the
same as the batch returning None), detect_anomaly finds where a NaN starts, EarlyStopping(check_finite) stops."""

from __future__ import annotations

import pytest
import torch

import fulmen
from fulmen.callbacks import EarlyStopping
from fulmen.demos.boring_classes import BoringModel
from fulmen.plugins import MixedPrecision

BAD = (3, 7)


class Spiky(BoringModel):
    """Its loss is NaN on the BAD batches (``how="skip"``), or it returns None there (``how="none"``)."""

    def __init__(self, how="nan"):
        super().__init__()
        torch.manual_seed(0)
        self.layer = torch.nn.Linear(32, 2)
        self.how = how

    def training_step(self, batch, batch_idx):
        out = super().training_step(batch, batch_idx)
        if batch_idx in BAD:
            if self.how == "none":
                return None
            out["loss"] = out["loss"] * float("nan")
        return out

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.01)


def fit(model, **kwargs):
    settings = dict(max_epochs=1, limit_train_batches=10, limit_val_batches=0, logger=False,
                    enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    trainer = fulmen.Trainer(**{**settings, **kwargs})
    trainer.fit(model)
    return trainer


@pytest.mark.parametrize("accumulate", [1, 2])
def test_skip_nonfinite_drops_the_bad_batches_as_if_they_returned_none(accumulate):
    with pytest.warns(UserWarning, match="non-finite loss at epoch 0, batch 3.*1 so far"):
        trainer = fit(skipped := Spiky("nan"), skip_nonfinite=True, accumulate_grad_batches=accumulate)
    assert trainer.nonfinite_skipped == 2 and trainer.callback_metrics["nonfinite_skipped"] == 2
    fit(by_hand := Spiky("none"), accumulate_grad_batches=accumulate)
    for a, b in zip(skipped.parameters(), by_hand.parameters()):
        assert torch.equal(a, b)
    assert all(torch.isfinite(p).all() for p in skipped.parameters())


def test_without_the_option_one_nan_ruins_the_weights():
    fit(model := Spiky("nan"))
    assert not all(torch.isfinite(p).all() for p in model.parameters())


def test_skip_nonfinite_with_a_grad_scaler():
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
    with pytest.warns(UserWarning, match="non-finite"):
        trainer = fit(model := Spiky("nan"), skip_nonfinite=True,
                      plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)])
    assert trainer.global_step == 10 and trainer.nonfinite_skipped == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_skip_nonfinite_must_be_a_bool():
    with pytest.raises((TypeError, ValueError), match="skip_nonfinite"):
        fulmen.Trainer(skip_nonfinite="yes")


def test_detect_anomaly_names_the_operation_that_made_the_nan():
    class Sqrt(BoringModel):
        def training_step(self, batch, batch_idx):
            return self.layer(batch).sum() * torch.sqrt(torch.tensor(-1.0, requires_grad=True))

    with pytest.raises(RuntimeError, match="returned nan"), pytest.warns(UserWarning):
        fit(Sqrt(), detect_anomaly=True)


def test_early_stopping_check_finite_stops_on_a_nan_metric():
    class NanVal(BoringModel):
        def validation_step(self, batch, batch_idx):
            self.log("val_loss", torch.tensor(float("nan")) if self.current_epoch >= 1 else self.step(batch))

    stop = EarlyStopping("val_loss", check_finite=True, patience=100)
    trainer = fit(NanVal(), max_epochs=5, limit_val_batches=2, callbacks=[stop])
    assert trainer.current_epoch == 2 and stop.stopped_epoch == 1
    assert "val_loss = nan is not finite" in stop.stopping_reason_message

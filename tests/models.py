"""Small modules shared by the tests."""

from __future__ import annotations

from fulmen.demos import BoringModel


class LogsLosses(BoringModel):
    """BoringModel that logs ``train_loss`` every step and ``val_loss`` in validation (subclasses add the
    hyperparameters their test needs)."""

    def training_step(self, batch, batch_idx):
        out = super().training_step(batch, batch_idx)
        self.log("train_loss", out["loss"])
        return out

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self.step(batch))

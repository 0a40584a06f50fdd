"""The digits classifier: scikit-learn's 8x8 digit images (shipped inside scikit-learn: no download), a small MLP
and the LightningModule that trains it. ``main.py`` and ``config.yaml`` run it from the command line."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, random_split

import fulmen as L


class DigitsDataModule(L.LightningDataModule):
    """The 1797 digit images, split 70/15/15 into train, validation and test (the same split every time)."""

    def __init__(self, batch_size: int = 64) -> None:
        """
        Args:
            batch_size: images per training batch
        """
        super().__init__()
        self.save_hyperparameters()

    def setup(self, stage: str) -> None:
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        data = TensorDataset(torch.tensor(x, dtype=torch.float32) / 16.0, torch.tensor(y))
        n_val = n_test = int(0.15 * len(data))
        self.train, self.val, self.test = random_split(
            data, [len(data) - n_val - n_test, n_val, n_test], generator=torch.Generator().manual_seed(0))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train, batch_size=self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val, batch_size=256)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test, batch_size=256)


class MLP(nn.Sequential):
    """64 pixels in, 10 classes out, one hidden layer."""

    def __init__(self, hidden: int = 128, dropout: float = 0.0) -> None:
        """
        Args:
            hidden: the width of the hidden layer
            dropout: the dropout probability after it
        """
        super().__init__(nn.Linear(64, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 10))


class LitClassifier(L.LightningModule):
    """Any network from 64 pixels to 10 classes, trained with cross-entropy and Adam with a step schedule."""

    def __init__(self, model: nn.Module, learning_rate: float = 1e-2, step_size: int = 10) -> None:
        """
        Args:
            model: the network (in a config: its class_path and init_args)
            learning_rate: Adam's learning rate
            step_size: epochs between halvings of the learning rate
        """
        super().__init__()
        self.save_hyperparameters(ignore=["model"])
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def evaluate(self, batch, stage: str) -> None:
        x, y = batch
        logits = self(x)
        self.log(f"{stage}_loss", F.cross_entropy(logits, y))
        self.log(f"{stage}_acc", (logits.argmax(dim=1) == y).float().mean(), prog_bar=True)

    def validation_step(self, batch, batch_idx):
        self.evaluate(batch, "val")

    def test_step(self, batch, batch_idx):
        self.evaluate(batch, "test")

    def predict_step(self, batch, batch_idx):
        return self(batch[0]).argmax(dim=1)

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.parameters(), lr=self.hparams.learning_rate)
        return {"optimizer": opt, "lr_scheduler": {
            "scheduler": torch.optim.lr_scheduler.StepLR(opt, self.hparams.step_size, gamma=0.5), "interval": "epoch"}}


class PrintEpoch(L.Callback):
    """Prints the validation loss and accuracy after each validation run (not the sanity check)."""

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking and trainer.is_global_zero:
            m = trainer.callback_metrics
            # Through the module's print, which writes above the progress bar instead of tearing its line.
            pl_module.print(f"epoch {trainer.current_epoch}: val_loss={m['val_loss']:.4f} "
                            f"val_acc={m['val_acc']:.4f}")

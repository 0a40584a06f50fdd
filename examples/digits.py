"""Train a small classifier on scikit-learn's digits data set (shipped inside scikit-learn: no download).

Run with ``make demo``: trains with early stopping and checkpointing, tests the best checkpoint, prints the test
accuracy (expect above 0.95) and draws the curves into ``lightning_logs/version_N/metrics.png``.
"""

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, random_split

import fulmen as L
from fulmen.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint


class DigitsDataModule(L.LightningDataModule):
    """8x8 digit images (1797 of them), split 70/15/15 into train, validation and test."""

    def __init__(self, batch_size: int = 64) -> None:
        super().__init__()
        self.save_hyperparameters()

    def setup(self, stage: str) -> None:
        x, y = load_digits(return_X_y=True)
        data = TensorDataset(torch.tensor(x, dtype=torch.float32) / 16.0, torch.tensor(y))
        n_val = n_test = int(0.15 * len(data))
        self.train, self.val, self.test = random_split(
            data, [len(data) - n_val - n_test, n_val, n_test], generator=torch.Generator().manual_seed(0)
        )

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train, batch_size=self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val, batch_size=256)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test, batch_size=256)


class LitClassifier(L.LightningModule):
    def __init__(self, model: nn.Module, learning_rate: float = 1e-2) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["model"])
        self.model = model

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.model(x), y)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def evaluate(self, batch, stage):
        x, y = batch
        logits = self.model(x)
        self.log(f"{stage}_loss", F.cross_entropy(logits, y))
        self.log(f"{stage}_acc", (logits.argmax(dim=1) == y).float().mean(), prog_bar=True)

    def validation_step(self, batch, batch_idx):
        self.evaluate(batch, "val")

    def test_step(self, batch, batch_idx):
        self.evaluate(batch, "test")

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.parameters(), lr=self.hparams.learning_rate)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.StepLR(opt, 10, gamma=0.5),
                                                    "interval": "epoch"}}


class PrintEpoch(L.Callback):
    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            m = trainer.callback_metrics
            print(f"epoch {trainer.current_epoch}: val_loss={m['val_loss']:.4f} val_acc={m['val_acc']:.4f}")


def main() -> None:
    L.seed_everything(0)
    dm = DigitsDataModule()
    model = LitClassifier(nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)))
    callbacks = [PrintEpoch(), EarlyStopping(monitor="val_loss", patience=8),
                 ModelCheckpoint(monitor="val_loss", save_last=True), LearningRateMonitor()]
    trainer = L.Trainer(max_epochs=30, accumulate_grad_batches=2, gradient_clip_val=0.5, val_check_interval=0.5,
                        callbacks=callbacks)
    trainer.fit(model, datamodule=dm)
    results = trainer.test(datamodule=dm, ckpt_path="best")
    print(f"test accuracy: {results[0]['test_acc']:.4f} (best checkpoint: {trainer.checkpoint_callback.best_model_path})")
    try:
        from fulmen.plot import plot
    except ImportError:
        return
    print(f"curves: {plot([trainer.log_dir])}")


if __name__ == "__main__":
    main()

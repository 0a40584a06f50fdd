"""A Lightning program as its users write it (Lightning's introductory autoencoder, on random data so that it needs
no download): it imports lightning.pytorch and pytorch_lightning, and is run unchanged by `fulmen run`."""

import argparse
import json

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lightning.pytorch as L
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.types import OptimizerLRScheduler, STEP_OUTPUT


class LitAutoEncoder(L.LightningModule):
    def __init__(self, hidden: int = 16, lr: float = 1e-2):
        super().__init__()
        self.save_hyperparameters()
        self.encoder = nn.Sequential(nn.Linear(32, hidden), nn.ReLU(), nn.Linear(hidden, 4))
        self.decoder = nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 32))

    def training_step(self, batch, batch_idx) -> STEP_OUTPUT:
        (x,) = batch
        loss = F.mse_loss(self.decoder(self.encoder(x)), x)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        (x,) = batch
        self.log("val_loss", F.mse_loss(self.decoder(self.encoder(x)), x))

    def configure_optimizers(self) -> OptimizerLRScheduler:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", default=".")
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--strategy", default="auto")
    parser.add_argument("--workers", type=int, default=0)  # started by spawn: they import this program again
    args = parser.parse_args()
    L.seed_everything(42)
    data = torch.randn(256, 32)
    workers = dict(num_workers=args.workers, multiprocessing_context="spawn") if args.workers else {}
    train = DataLoader(TensorDataset(data[:192]), batch_size=32, shuffle=True, **workers)
    val = DataLoader(TensorDataset(data[192:]), batch_size=32)
    model = LitAutoEncoder()
    trainer = L.Trainer(max_epochs=3, default_root_dir=args.root, logger=CSVLogger(args.root),
                        accelerator="cpu", devices=args.devices, strategy=args.strategy, enable_progress_bar=False,
                        callbacks=[EarlyStopping("val_loss", patience=5), ModelCheckpoint(monitor="val_loss")])
    trainer.fit(model, train, val)
    if trainer.is_global_zero:
        with open(f"{args.root}/result.json", "w") as f:
            json.dump({"trainer": type(trainer).__module__, "global_step": trainer.global_step,
                       "val_loss": float(trainer.callback_metrics["val_loss"]),
                       "weight_sum": float(sum(p.detach().sum() for p in model.parameters())),
                       "best": trainer.checkpoint_callback.best_model_path}, f)


if __name__ == "__main__":
    main()

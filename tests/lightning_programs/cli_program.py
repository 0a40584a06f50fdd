"""A LightningCLI program as its users write it, run unchanged by `fulmen run` with cli_config.yaml, whose
class_path strings name lightning.pytorch classes."""

import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningCLI


class Regression(LightningModule):
    def __init__(self, width: int = 8, lr: float = 0.05):
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, width), torch.nn.Tanh(), torch.nn.Linear(width, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class Data(LightningDataModule):
    def __init__(self, batch_size: int = 16):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        x = torch.randn(96, 4, generator=g)
        self.data = TensorDataset(x, x.sum(1, keepdim=True))
        self.batch_size = batch_size

    def train_dataloader(self):
        return DataLoader(self.data, batch_size=self.batch_size)

    def val_dataloader(self):
        return DataLoader(self.data, batch_size=self.batch_size)


if __name__ == "__main__":
    cli = LightningCLI(Regression, Data)
    print("TRAINER", type(cli.trainer).__module__, cli.trainer.global_step,
          [type(cb).__module__ + "." + type(cb).__name__ for cb in cli.trainer.callbacks])

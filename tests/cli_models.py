"""Classes that the CLI tests name by class_path (``tests.cli_models.Model``): they must live in an importable
module, as a user's do."""

from __future__ import annotations

import torch

from fulmen.demos.boring_classes import BoringDataModule, BoringModel
from tests.models import LogsLosses


class Model(LogsLosses):
    """A BoringModel with a width and a learning rate, logging its losses."""

    def __init__(self, hidden: int = 4, lr: float = 0.1) -> None:
        """
        Args:
            hidden: the width of the hidden layer
            lr: the learning rate of its own configure_optimizers
        """
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Sequential(torch.nn.Linear(32, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 2))

    def test_step(self, batch, batch_idx):
        self.log("test_loss", self.step(batch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class Encoder(torch.nn.Module):
    """A part given to a model as an argument: the CLI builds it from its class_path."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.net = torch.nn.Linear(32, width)


class Composed(BoringModel):
    """A model whose argument is an object: only the CLI's saved config can build it again from a checkpoint."""

    def __init__(self, encoder: Encoder, classes: int = 2) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Sequential(encoder.net, torch.nn.Linear(encoder.net.out_features, classes))


class Data(BoringDataModule):
    """BoringDataModule with a batch size argument."""

    def __init__(self, batch_size: int = 8) -> None:
        super().__init__()
        self.batch_size = batch_size

    def train_dataloader(self):
        return torch.utils.data.DataLoader(self.random_train, batch_size=self.batch_size)

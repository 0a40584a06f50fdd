"""Moving a Lightning script to fulmen: the classic MNIST classifier of Lightning's getting-started pages, written
the Lightning way, with one line changed:

    import lightning.pytorch as pl     # before
    import fulmen as pl                # after

Everything else (the module, the hooks, the Trainer arguments, self.log, the checkpoints) stays as it was. The data
is MNIST through torchvision when torchvision is installed and the files can be downloaded; otherwise (as on an
offline machine) scikit-learn's digits, scaled up to 28x28, stand in so that the script still runs end to end.

    python examples/mnist_migration/train.py [--epochs 3] [--data-dir ./data]
"""

from __future__ import annotations

import argparse
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset, random_split

import fulmen as pl  # was: import lightning.pytorch as pl


class LitMNIST(pl.LightningModule):
    def __init__(self, hidden_size: int = 64, learning_rate: float = 2e-4) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = nn.Sequential(
            nn.Flatten(), nn.Linear(28 * 28, hidden_size), nn.ReLU(), nn.Dropout(0.1),
            nn.Linear(hidden_size, hidden_size), nn.ReLU(), nn.Dropout(0.1), nn.Linear(hidden_size, 10))

    def forward(self, x):
        return F.log_softmax(self.model(x), dim=1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.nll_loss(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val_loss", F.nll_loss(logits, y), prog_bar=True)
        self.log("val_acc", (logits.argmax(dim=1) == y).float().mean(), prog_bar=True)

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test_acc", (self(x).argmax(dim=1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.learning_rate)


def mnist(data_dir: str) -> Optional[tuple[Dataset, Dataset]]:
    """MNIST's train and test sets, normalised as usual; None when torchvision or the download is missing."""
    try:
        from torchvision import transforms
        from torchvision.datasets import MNIST
    except ImportError:
        return None
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    try:
        return (MNIST(data_dir, train=True, download=True, transform=transform),
                MNIST(data_dir, train=False, download=True, transform=transform))
    except (OSError, RuntimeError) as err:  # offline: the download fails
        print(f"MNIST could not be loaded ({err}); using scikit-learn's digits instead")
        return None


def digits_as_mnist() -> tuple[Dataset, Dataset]:
    """scikit-learn's 8x8 digits, scaled to 28x28 and normalised like MNIST, split 80/20."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    images = torch.tensor(x, dtype=torch.float32).view(-1, 1, 8, 8) / 16.0
    images = F.interpolate(images, size=(28, 28), mode="bilinear", align_corners=False)
    data = TensorDataset((images - 0.1307) / 0.3081, torch.tensor(y))
    n_test = len(data) // 5
    train, test = random_split(data, [len(data) - n_test, n_test], generator=torch.Generator().manual_seed(0))
    return train, test


def main(argv: Optional[list[str]] = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--data-dir", default="./data")
    parser.add_argument("--digits", action="store_true", help="skip MNIST and use the digits directly")
    parser.add_argument("--root", default=".")
    args = parser.parse_args(argv)

    pl.seed_everything(42)
    found = None if args.digits else mnist(args.data_dir)
    train, test = found or digits_as_mnist()
    n_val = len(train) // 10
    train, val = random_split(train, [len(train) - n_val, n_val], generator=torch.Generator().manual_seed(42))

    model = LitMNIST(learning_rate=2e-4 if found else 2e-3)
    trainer = pl.Trainer(max_epochs=args.epochs, accelerator="auto", devices=1, default_root_dir=args.root)
    trainer.fit(model, DataLoader(train, batch_size=64, shuffle=True), DataLoader(val, batch_size=256))
    accuracy = trainer.test(model, DataLoader(test, batch_size=256))[0]["test_acc"]
    print(f"test accuracy: {accuracy:.4f}")
    return accuracy


if __name__ == "__main__":
    main()

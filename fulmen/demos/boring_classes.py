"""Small models and data sets, shipped so that tests and bug reports can run anywhere without downloads."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, IterableDataset
from typing_extensions import override

from fulmen.core.datamodule import LightningDataModule
from fulmen.core.module import LightningModule


class RandomDataset(Dataset):
    """``length`` random vectors of ``size`` features."""

    def __init__(self, size: int, length: int) -> None:
        self.len = length
        self.data = torch.randn(length, size)

    def __getitem__(self, index: int) -> Tensor:
        return self.data[index]

    def __len__(self) -> int:
        return self.len


class RandomDictDataset(RandomDataset):
    """As RandomDataset, each item a dict ``{"a": x, "b": x + 2}``."""

    def __getitem__(self, index: int) -> dict[str, Tensor]:  # type: ignore[override]
        a = self.data[index]
        return {"a": a, "b": a + 2}


class RandomIterableDataset(IterableDataset):
    """``count`` random vectors, as an IterableDataset without a length."""

    def __init__(self, size: int, count: int) -> None:
        self.count = count
        self.size = size

    def __iter__(self) -> Iterator[Tensor]:
        for _ in range(self.count):
            yield torch.randn(self.size)


class RandomIterableDatasetWithLen(RandomIterableDataset):
    """As RandomIterableDataset, with a length."""

    def __len__(self) -> int:
        return self.count


class BoringModel(LightningModule):
    """A linear layer 32 -> 2 trained towards ones with SGD(lr=0.1) and StepLR(1): the smallest complete module.

    The step results have the shapes Lightning's BoringModel gives: ``{"loss"}``, ``{"x"}``, ``{"y"}``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(32, 2)

    @override
    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x)

    def loss(self, preds: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        if labels is None:
            labels = torch.ones_like(preds)
        return F.mse_loss(preds, labels)

    def step(self, batch: Any) -> Tensor:
        return self.loss(self(batch))

    @override
    def training_step(self, batch: Any, batch_idx: int) -> dict[str, Tensor]:
        return {"loss": self.step(batch)}

    @override
    def validation_step(self, batch: Any, batch_idx: int) -> dict[str, Tensor]:
        return {"x": self.step(batch)}

    @override
    def test_step(self, batch: Any, batch_idx: int) -> dict[str, Tensor]:
        return {"y": self.step(batch)}

    @override
    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
        return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)]

    @override
    def train_dataloader(self) -> DataLoader:
        return DataLoader(RandomDataset(32, 64))

    @override
    def val_dataloader(self) -> DataLoader:
        return DataLoader(RandomDataset(32, 64))

    @override
    def test_dataloader(self) -> DataLoader:
        return DataLoader(RandomDataset(32, 64))

    @override
    def predict_dataloader(self) -> DataLoader:
        return DataLoader(RandomDataset(32, 64))


class ManualOptimBoringModel(BoringModel):
    """BoringModel under manual optimization."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False

    @override
    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        opt = self.optimizers()
        loss = self.step(batch)
        opt.zero_grad()
        self.manual_backward(loss)
        opt.step()
        return loss


class BoringDataModule(LightningDataModule):
    """RandomDataset(32, 64 * 4) split into train / val / test / predict quarters."""

    def __init__(self) -> None:
        super().__init__()
        self.random_full = RandomDataset(32, 64 * 4)

    @override
    def setup(self, stage: str) -> None:
        full = self.random_full
        if stage == "fit":
            self.random_train = torch.utils.data.Subset(full, range(64))
        if stage in ("fit", "validate"):
            self.random_val = torch.utils.data.Subset(full, range(64, 128))
        if stage == "test":
            self.random_test = torch.utils.data.Subset(full, range(128, 192))
        if stage == "predict":
            self.random_predict = torch.utils.data.Subset(full, range(192, 256))

    @override
    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.random_train)

    @override
    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.random_val)

    @override
    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.random_test)

    @override
    def predict_dataloader(self) -> DataLoader:
        return DataLoader(self.random_predict)


class BoringDataModuleNoLen(BoringDataModule):
    """BoringDataModule's stages on iterable datasets without a length (512 / 128 / 256 / 64 samples)."""

    def __init__(self) -> None:
        LightningDataModule.__init__(self)  # no random_full: these datasets draw their samples as they are read

    @override
    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.random_train = RandomIterableDataset(32, 512)
        if stage in ("fit", "validate"):
            self.random_val = RandomIterableDataset(32, 128)
        if stage == "test":
            self.random_test = RandomIterableDataset(32, 256)
        if stage == "predict":
            self.random_predict = RandomIterableDataset(32, 64)


class IterableBoringDataModule(LightningDataModule):
    """Two loaders per stage, one over a map-style and one over an iterable dataset of 4 features (16 samples each
    for training, 32 for validation, 64 for test, 128 for predict)."""

    @override
    def setup(self, stage: str) -> None:
        def pair(length: int) -> list[Any]:
            return [RandomDataset(4, length), RandomIterableDataset(4, length)]

        if stage == "fit":
            self.train_datasets = pair(16)
        if stage in ("fit", "validate"):
            self.val_datasets = pair(32)
        if stage == "test":
            self.test_datasets = pair(64)
        if stage == "predict":
            self.predict_datasets = pair(128)

    @override
    def train_dataloader(self) -> list[DataLoader]:
        return [DataLoader(ds) for ds in self.train_datasets]

    @override
    def val_dataloader(self) -> list[DataLoader]:
        return [DataLoader(ds) for ds in self.val_datasets]

    @override
    def test_dataloader(self) -> list[DataLoader]:
        return [DataLoader(ds) for ds in self.test_datasets]

    @override
    def predict_dataloader(self) -> list[DataLoader]:
        return [DataLoader(ds) for ds in self.predict_datasets]


class DemoModel(LightningModule):
    """A linear layer 32 -> ``out_dim`` with a ReLU, trained with Adam to push its outputs' sum down; it brings no
    data (pass loaders of 32-feature vectors)."""

    def __init__(self, out_dim: int = 10, learning_rate: float = 0.02) -> None:
        super().__init__()
        self.l1 = torch.nn.Linear(32, out_dim)
        self.learning_rate = learning_rate

    @override
    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.l1(x.view(x.size(0), -1)))

    @override
    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self(batch).sum()

    @override
    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.learning_rate)


class Net(nn.Module):
    """A small convolutional classifier of 28x28 one-channel images into 10 classes (log-probabilities): two 3x3
    convolutions (32 and 64 channels), max pooling, dropout, and two linear layers."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    @override
    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        x = self.dropout1(F.max_pool2d(x, 2))
        x = self.dropout2(F.relu(self.fc1(torch.flatten(x, 1))))
        return F.log_softmax(self.fc2(x), dim=1)


__all__ = [
    "BoringDataModule", "BoringDataModuleNoLen", "BoringModel", "DemoModel", "IterableBoringDataModule",
    "ManualOptimBoringModel", "Net", "RandomDataset", "RandomDictDataset", "RandomIterableDataset",
    "RandomIterableDatasetWithLen",
]

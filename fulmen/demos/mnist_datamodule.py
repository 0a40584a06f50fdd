"""MNIST as a dataset and a datamodule, as Lightning's demo has them: the processed tensors Lightning hosts
(``training.pt``, ``test.pt``: uint8 images and int64 labels), fetched once into ``data_dir/MNIST/complete``."""

from __future__ import annotations

import os
import urllib.request
from typing import Any, Callable, Optional

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, random_split
from typing_extensions import override

from fulmen.core.datamodule import LightningDataModule

_DATASETS_PATH = "./data"
_BASE_URL = "https://pl-public-data.s3.amazonaws.com/MNIST/processed/"


class MNIST(Dataset):
    """The MNIST training (``train=True``, 60 000 images) or test set: item ``i`` is a ``(1, 28, 28)`` float image
    in [0, 1] (then ``(x - mean) / std`` with ``normalize=(mean, std)``, and ``transform`` if given) and its label.

    The files are read with ``torch.load(weights_only=True)``: a downloaded file can hold tensors only, never code.
    """

    TRAIN_FILE_NAME = "training.pt"
    TEST_FILE_NAME = "test.pt"
    cache_folder_name = "complete"

    def __init__(self, root: str = _DATASETS_PATH, train: bool = True,
                 normalize: Optional[tuple[float, float]] = None, download: bool = True,
                 transform: Optional[Callable[[Tensor], Any]] = None) -> None:
        super().__init__()
        self.root = root
        self.train = train
        self.normalize = normalize
        self.transform = transform
        if download:
            self.download()
        path = os.path.join(self.cached_folder_path, self.TRAIN_FILE_NAME if train else self.TEST_FILE_NAME)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"MNIST: {path} does not exist; pass download=True to fetch it")
        self.data, self.targets = torch.load(path, weights_only=True)

    @property
    def cached_folder_path(self) -> str:
        return os.path.join(self.root, "MNIST", self.cache_folder_name)

    def download(self) -> None:
        """Fetch the two files that are missing (each written whole, then renamed into place)."""
        os.makedirs(self.cached_folder_path, exist_ok=True)
        for name in (self.TRAIN_FILE_NAME, self.TEST_FILE_NAME):
            path = os.path.join(self.cached_folder_path, name)
            if os.path.isfile(path):
                continue
            with urllib.request.urlopen(_BASE_URL + name, timeout=120) as response:  # noqa: S310 (fixed https URL)
                with open(path + ".part", "wb") as f:
                    f.write(response.read())
            os.replace(path + ".part", path)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = self.data[index].float().div(255).unsqueeze(0)
        if self.normalize is not None:
            mean, std = self.normalize
            image = (image - mean) / std
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index])

    def __len__(self) -> int:
        return len(self.data)


class MNISTDataModule(LightningDataModule):
    """MNIST split into training and validation (the last ``val_split`` images of a fixed shuffle, seed 42) and
    the test set; ``normalize`` maps pixels to [-1, 1]. The loaders drop the last incomplete batch."""

    name = "mnist"

    def __init__(self, data_dir: str = _DATASETS_PATH, val_split: int = 5000, num_workers: int = 16,
                 normalize: bool = False, seed: int = 42, batch_size: int = 32) -> None:
        super().__init__()
        self.data_dir = data_dir
        self.val_split = val_split
        self.num_workers = num_workers
        self.normalize = normalize
        self.seed = seed
        self.batch_size = batch_size

    @property
    def num_classes(self) -> int:
        return 10

    def _dataset(self, train: bool, download: bool = False) -> MNIST:
        return MNIST(self.data_dir, train=train, download=download, normalize=(0.5, 0.5) if self.normalize else None)

    @override
    def prepare_data(self) -> None:
        """Fetch the files into ``data_dir`` (once per node)."""
        self._dataset(train=True, download=True)

    @override
    def setup(self, stage: str) -> None:
        dataset = self._dataset(train=True)
        self.dataset_train, self.dataset_val = random_split(
            dataset, [len(dataset) - self.val_split, self.val_split], generator=torch.Generator().manual_seed(42))

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          drop_last=True, pin_memory=torch.cuda.is_available())

    @override
    def train_dataloader(self) -> DataLoader:
        return self._loader(self.dataset_train, shuffle=True)

    @override
    def val_dataloader(self) -> DataLoader:
        return self._loader(self.dataset_val, shuffle=False)

    @override
    def test_dataloader(self) -> DataLoader:
        return self._loader(self._dataset(train=False), shuffle=False)

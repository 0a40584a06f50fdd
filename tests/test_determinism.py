"""deterministic, benchmark and seed_everything(workers=True): the torch switches, and two seeded runs (random
augmentation in worker processes, dropout, shuffling) ending with identical weights."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

import fulmen
from fulmen.demos.boring_classes import BoringModel


@pytest.fixture(autouse=True)
def _restore_torch_flags(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.benchmark)
    yield
    torch.use_deterministic_algorithms(before[0], warn_only=before[1])
    torch.backends.cudnn.benchmark = before[2]


@pytest.mark.parametrize("deterministic, warn_only", [(True, False), ("warn", True)])
def test_deterministic_sets_torch_and_cublas(deterministic, warn_only):
    trainer = fulmen.Trainer(deterministic=deterministic, logger=False)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled() is warn_only
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8" and torch.backends.cudnn.benchmark is False
    assert trainer.deterministic == deterministic


def test_benchmark_switch():
    fulmen.Trainer(benchmark=True, logger=False)
    assert torch.backends.cudnn.benchmark is True
    fulmen.Trainer(benchmark=False, deterministic=False, logger=False)
    assert torch.backends.cudnn.benchmark is False and not torch.are_deterministic_algorithms_enabled()


class Augmented(Dataset):
    def __len__(self):
        return 32

    def __getitem__(self, i):
        # numpy and torch randomness inside the worker: without worker seeding, workers would repeat each other
        return torch.full((32,), i / 32) + 0.1 * torch.randn(32) + 0.1 * float(np.random.rand())


class Noisy(BoringModel):
    def training_step(self, batch, batch_idx):
        return super().training_step(torch.nn.functional.dropout(batch, 0.2), batch_idx)

    def train_dataloader(self):
        return DataLoader(Augmented(), batch_size=4, shuffle=True, num_workers=2)


def seeded_run():
    fulmen.seed_everything(1234, workers=True)
    model = Noisy()
    fulmen.Trainer(max_epochs=2, limit_val_batches=0, deterministic=True, logger=False, enable_progress_bar=False,
                   enable_model_summary=False, enable_checkpointing=False).fit(model)
    return model.layer.weight.detach().clone()


def test_two_seeded_runs_give_identical_weights():
    first, second = seeded_run(), seeded_run()
    assert torch.equal(first, second)
    fulmen.seed_everything(99, workers=True)
    other = Noisy()
    fulmen.Trainer(max_epochs=2, limit_val_batches=0, logger=False, enable_progress_bar=False,
                   enable_model_summary=False, enable_checkpointing=False).fit(other)
    assert not torch.equal(first, other.layer.weight)  # the seed matters


def test_sync_batchnorm_reaches_the_strategy():
    from fulmen.plugins import TorchSyncBatchNorm

    assert isinstance(fulmen.Trainer(sync_batchnorm=True, logger=False).strategy.layer_sync, TorchSyncBatchNorm)

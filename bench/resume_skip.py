"""Resuming in the middle of an epoch must not cost the batches already consumed.

One epoch of 10,000 batches (8 samples each) from a map-style dataset whose ``__getitem__`` does some work, as
decoding would, and a shuffled DataLoader. A checkpoint is taken inside the epoch after batch ``k``; then
``fit(ckpt_path=...)`` resumes it. Measured: the time from the ``fit`` call to the first resumed ``training_step``,
for a checkpoint near the start of the epoch (k=50) and near its end (k=9,950). fulmen skips the consumed batches at
the sampler, so both should take about the same time. For scale, the script also times reading and dropping 9,950
batches, which is what skipping by loading would cost.
Run: ``.venv/bin/python bench/resume_skip.py [--batches 10000] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import tempfile
import time
import warnings

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

import fulmen as L
from fulmen.callbacks import Callback

warnings.filterwarnings("ignore")
logging.disable(logging.INFO)
torch.set_num_threads(1)


class Decoded(Dataset):
    """Each sample costs a little work (a 64x64 matrix product), as decoding a record would."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.base = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        return (self.base @ self.base)[i % 64, :16] + i


class Net(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(16, 1)
        self.first_step_at: float | None = None

    def training_step(self, batch, batch_idx):
        if self.first_step_at is None:
            self.first_step_at = time.perf_counter()
        return self.layer(batch).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1e-3)


class SaveAt(Callback):
    def __init__(self, batch: int, path: str) -> None:
        self.batch, self.path = batch, path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx + 1 == self.batch:
            trainer.save_checkpoint(self.path)
            trainer.should_stop = True


def _trainer(folder: str, **kwargs) -> L.Trainer:
    return L.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                     enable_checkpointing=False, num_sanity_val_steps=0, default_root_dir=folder, **kwargs)


def _loader(batches: int) -> DataLoader:
    return DataLoader(Decoded(batches * 8), batch_size=8, shuffle=True)


def time_to_first_step(folder: str, batches: int, at: int) -> float:
    path = os.path.join(folder, f"at{at}.ckpt")
    if not os.path.exists(path):
        L.seed_everything(0)
        _trainer(folder, callbacks=[SaveAt(at, path)]).fit(Net(), _loader(batches))
    model = Net()
    # Stop right after the first resumed batch: only the resume itself is timed.
    trainer = _trainer(folder, max_steps=at + 1)
    start = time.perf_counter()
    trainer.fit(model, _loader(batches), ckpt_path=path)
    assert model.first_step_at is not None and trainer.global_step == at + 1
    return model.first_step_at - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="fulmen-resume-")
    try:
        near_start, near_end = 50, args.batches - 50
        times: dict[str, list[float]] = {"start": [], "end": [], "read": []}
        for _ in range(args.rounds):
            times["start"].append(time_to_first_step(folder, args.batches, near_start))
            times["end"].append(time_to_first_step(folder, args.batches, near_end))
            it = iter(_loader(args.batches))
            begin = time.perf_counter()
            for _ in range(near_end):
                next(it)
            times["read"].append(time.perf_counter() - begin)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"epoch of {args.batches} batches; median of {args.rounds} rounds")
        print(f"resume after batch {near_start}: {med['start'] * 1000:.1f} ms to the first step")
        print(f"resume after batch {near_end}: {med['end'] * 1000:.1f} ms to the first step "
              f"({med['end'] / med['start']:.2f}x the near-start resume)")
        print(f"for scale, loading and dropping {near_end} batches: {med['read'] * 1000:.0f} ms")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Checkpoint save and load time: fulmen against plain torch.save / torch.load of the same contents.

A model of about 100 MB of float32 weights (one 5000x5000 linear layer and a small head) with AdamW state after one
step, so a full checkpoint is about 300 MB. Measured side by side, alternating, in one process:

    save  fulmen: ``trainer.save_checkpoint(path)``: the dict is built from the run (weights, optimizer, loops,
                  resume record), written to a temporary file, fsynced, renamed, the folder fsynced
          torch:  ``torch.save(checkpoint, path)`` of that same dict, built beforehand (no fsync, no rename)
    load  fulmen: ``Net.load_from_checkpoint(path)`` (safe load, module built from its hyperparameters, weights in)
          torch:  ``Net(); torch.load(path, weights_only=True); load_state_dict``

Also shown: torch.save followed by an fsync, which is the price of durability alone; and the same save through
``AsyncCheckpointIO``: how long the loop is blocked (the dict built and copied to host memory) and how long until the
file is durable (the background write done), each over fulmen's synchronous save of the same round. Every save writes a new file
(the previous one is deleted first, untimed), and ``os.sync()`` runs, untimed, before each measure, so that no write
inherits another's write-back. Loads read the file from the page cache (it was just written). Reported: median times, and the median of the per-round ratios. ``--dir /dev/shm`` (memory) leaves out the disk, so
it shows fulmen's own cost; a folder on disk adds what durability costs there.
Run: ``.venv/bin/python bench/checkpoint.py [--rounds 11] [--dir PATH]``.
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

import fulmen as L
from fulmen.checkpoint import format as ckpt_format
from fulmen.plugins.io import AsyncCheckpointIO

warnings.filterwarnings("ignore")
logging.disable(logging.INFO)


class Net(L.LightningModule):
    def __init__(self, width: int = 5000) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.body = nn.Linear(width, width)
        self.head = nn.Linear(width, 2)

    def training_step(self, batch, batch_idx):
        return self.head(torch.relu(self.body(batch))).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-4)

    def train_dataloader(self):
        return [torch.randn(2, self.hparams.width)]


def _timed(fn, path: str = "") -> float:
    # Each save writes a new file (the one of the round before is deleted first, untimed), and each measure starts
    # with no dirty pages left by the one before: a write that did not fsync would otherwise hand its write-back to
    # whichever write comes next.
    if path and os.path.exists(path):
        os.remove(path)
    os.sync()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _torch_save_fsync(obj, path: str) -> None:
    with open(path, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())


def _async_save(trainer: L.Trainer, background: AsyncCheckpointIO, path: str) -> tuple[float, float]:
    """(blocked, durable): how long ``save_checkpoint`` held the loop, and how long until the file was written."""
    default = trainer.strategy.checkpoint_io
    trainer.strategy.checkpoint_io = background
    try:
        if os.path.exists(path):
            os.remove(path)
        os.sync()
        start = time.perf_counter()
        trainer.save_checkpoint(path)
        blocked = time.perf_counter() - start
        background.wait()
        return blocked, time.perf_counter() - start
    finally:
        trainer.strategy.checkpoint_io = default


def _torch_load(path: str) -> nn.Module:
    model = Net()
    model.load_state_dict(torch.load(path, weights_only=True)["state_dict"])
    return model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--dir", default=None, help="where the files go (default: a temporary folder)")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="fulmen-bench-", dir=args.dir)
    try:
        torch.manual_seed(0)
        trainer = L.Trainer(max_steps=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                            enable_checkpointing=False, default_root_dir=folder)
        trainer.fit(Net())
        checkpoint = ckpt_format.dump(trainer)
        weights_mb = sum(v.numel() * v.element_size() for v in checkpoint["state_dict"].values()) / 2**20
        ours, theirs, synced = os.path.join(folder, "ours.ckpt"), os.path.join(folder, "torch.ckpt"), \
            os.path.join(folder, "synced.ckpt")
        in_background = os.path.join(folder, "async.ckpt")
        background = AsyncCheckpointIO()
        times: dict[str, list[float]] = {k: [] for k in ("save_ours", "save_torch", "save_torch_fsync",
                                                            "save_async_blocked", "save_async_durable",
                                                            "load_ours", "load_torch")}
        for r in range(args.rounds + 1):  # round 0 warms up (allocator, page cache) and is dropped
            saves = [("save_ours", ours, lambda: trainer.save_checkpoint(ours)),
                     ("save_torch", theirs, lambda: torch.save(checkpoint, theirs)),
                     ("save_torch_fsync", synced, lambda: _torch_save_fsync(checkpoint, synced))]
            loads = [("load_ours", lambda: Net.load_from_checkpoint(ours)), ("load_torch", lambda: _torch_load(theirs))]
            shift = r % len(saves)
            for name, path, fn in saves[shift:] + saves[:shift]:
                elapsed = _timed(fn, path)
                if r:
                    times[name].append(elapsed)
            blocked, durable = _async_save(trainer, background, in_background)
            if r:
                times["save_async_blocked"].append(blocked)
                times["save_async_durable"].append(durable)
            for name, fn in (loads if r % 2 else loads[::-1]):
                elapsed = _timed(fn)
                if r:
                    times[name].append(elapsed)
        size_mb = os.path.getsize(ours) / 2**20
        med = {k: statistics.median(v) for k, v in times.items()}

        def ratio(a: str, b: str) -> float:  # the median of the per-round ratios: rounds pair up side by side
            return statistics.median(x / y for x, y in zip(times[a], times[b]))

        print(f"weights {weights_mb:.0f} MB, checkpoint file {size_mb:.0f} MB (torch.save of the same dict: "
              f"{os.path.getsize(theirs) / 2**20:.0f} MB); {args.rounds} rounds in {folder}")
        print(f"save: fulmen {med['save_ours']:.3f} s, torch.save {med['save_torch']:.3f} s, torch.save + fsync "
              f"{med['save_torch_fsync']:.3f} s (medians); fulmen / torch.save {ratio('save_ours', 'save_torch'):.3f}"
              f", fulmen / torch.save + fsync {ratio('save_ours', 'save_torch_fsync'):.3f} (median ratios)")
        print(f"async save: the loop blocked {med['save_async_blocked']:.3f} s, durable after "
              f"{med['save_async_durable']:.3f} s (medians); blocked / fulmen's synchronous save "
              f"{ratio('save_async_blocked', 'save_ours'):.3f}, durable / synchronous "
              f"{ratio('save_async_durable', 'save_ours'):.3f} (median ratios)")
        print(f"load: fulmen {med['load_ours']:.3f} s, torch.load {med['load_torch']:.3f} s (medians); "
              f"fulmen / torch {ratio('load_ours', 'load_torch'):.3f} (median ratio)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

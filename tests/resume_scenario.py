"""The exact-resume scenario, run as its own process so that tests can SIGKILL it at any step.

    python tests/resume_scenario.py DIR [--workers N] [--kill-at STEP] [--resume]

Trains a small dropout MLP with AdamW, a step LR scheduler, gradient accumulation (3), validation every half epoch,
a shuffled loader and extra randomness in training_step; a ModelCheckpoint saves ``last.ckpt`` after every
batch. ``--kill-at S`` makes the process SIGKILL itself in the middle of the batch after optimizer step S (inside
an accumulation window), as a crash would. ``--resume`` continues from ``ckpt_path="last"``. The final weights are
written to DIR/final.pt.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import fulmen as L  # noqa: E402
from fulmen.callbacks import Callback, ModelCheckpoint  # noqa: E402


class Data(Dataset):
    def __init__(self, n: int) -> None:
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(n, 8, generator=g)
        self.y = (self.x.sum(1) > 0).long()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i]


class Net(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))

    def training_step(self, batch, batch_idx):
        x, y = batch
        noise = torch.randn_like(x) * 0.01 + float(np.random.rand()) * 0.01 + random.random() * 0.01
        loss = nn.functional.cross_entropy(self.net(x + noise), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self.net(x), y))

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=0.01)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.StepLR(opt, 4, 0.7),
                                                   "interval": "step"}}


class KillAt(Callback):
    """SIGKILL this process after optimizer step ``step``, one batch into the next accumulation window."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.armed = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            if self.armed:
                os.kill(os.getpid(), signal.SIGKILL)
            self.armed = True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--kill-at", type=int, default=None)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    L.seed_everything(7)
    shuffle = os.environ.get("SCENARIO_SHUFFLE", "1") == "1"
    train = DataLoader(Data(40), batch_size=4, shuffle=shuffle, num_workers=args.workers)
    val = DataLoader(Data(8), batch_size=4, num_workers=args.workers)
    callbacks = [ModelCheckpoint(dirpath=os.path.join(args.dir, "ckpt"), every_n_train_steps=1, save_top_k=0,
                                 save_last=True)]
    # Also a checkpoint after every batch (inside accumulation windows too): "last" resumes from the newest file.
    callbacks.append(_EveryBatch(os.path.join(args.dir, "ckpt", "every-batch.ckpt")))
    if args.kill_at is not None:
        callbacks.append(KillAt(args.kill_at))
    accumulate = int(os.environ.get("SCENARIO_ACCUMULATE", "3"))
    val_interval = float(os.environ.get("SCENARIO_VAL_INTERVAL", "0.5"))
    trainer = L.Trainer(max_epochs=3, accumulate_grad_batches=accumulate, val_check_interval=val_interval, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks,
                        default_root_dir=args.dir, num_sanity_val_steps=0)
    trainer.fit(Net(), train, val, ckpt_path="last" if args.resume else None)
    torch.save(trainer.lightning_module.state_dict(), os.path.join(args.dir, "final.pt"))


class _EveryBatch(Callback):
    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        trainer.save_checkpoint(self.path)


if __name__ == "__main__":
    main()

"""The exact-resume scenario, run as its own process so that tests can SIGKILL it at any step.

    python tests/resume_scenario.py DIR [--workers N] [--kill-at STEP] [--signal-at STEP [--signal-in val]]
                                        [--signal NAME] [--fault KIND:N] [--resume]

Trains a small dropout MLP with AdamW, a step LR scheduler, gradient accumulation (3), validation every half epoch,
a shuffled loader and extra randomness in training_step; a ModelCheckpoint saves ``last.ckpt`` after every
batch. ``--kill-at S`` makes the process SIGKILL itself in the middle of the batch after optimizer step S (inside
an accumulation window), as a crash would. ``--signal-at S`` sends the process SIGTERM (or ``--signal``) at the same
point, or with ``--signal-in val`` during the first validation after step S. ``--fault KIND:N`` SIGKILLs the
process at the N-th event of a kind: "step" (inside training_step, between forward and backward), "val" (inside
validation_step), "save" (half-way through writing a checkpoint file) or "flush" (half-way through a CSV logger
write); the run then logs to a CSVLogger every step. Every run writes DIR/counts.json: how many events of each kind
it saw. ``--resume`` continues from ``ckpt_path="last"``. The final weights are written to DIR/final.pt, each epoch's mean training loss to
DIR/epochs.txt.

Environment: SCENARIO_ACCUMULATE, SCENARIO_VAL_INTERVAL, SCENARIO_SHUFFLE, SCENARIO_ACCELERATOR change the run;
SCENARIO_METRIC=1 also logs a torchmetrics MeanMetric (its epoch values go to DIR/metric_epochs.txt);
SCENARIO_STATEFUL=1 trains from a torchdata StatefulDataLoader; SCENARIO_ASYNC=1 writes the checkpoints with
AsyncCheckpointIO (a "save" fault then kills the process from the background writer); SCENARIO_CHECKPOINTS=0
leaves only the default ModelCheckpoint (so a preemption checkpoint is the one to resume from); SCENARIO_SLEEP
(seconds) slows each step down, and DIR/started appears after step 2, for a signal sent from outside.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import fulmen as L  # noqa: E402
from fulmen.callbacks import Callback, ModelCheckpoint  # noqa: E402
from fulmen.loggers import CSVLogger  # noqa: E402
from fulmen.plugins.io import AsyncCheckpointIO  # noqa: E402


SLEEP = float(os.environ.get("SCENARIO_SLEEP", "0"))
METRIC = os.environ.get("SCENARIO_METRIC") == "1"


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
        if METRIC:  # a torchmetrics object logged for its epoch value, whose state only the resume record keeps
            import torchmetrics

            self.loss_mean = torchmetrics.MeanMetric()

    def training_step(self, batch, batch_idx):
        x, y = batch
        noise = torch.randn_like(x) * 0.01 + float(np.random.rand()) * 0.01 + random.random() * 0.01
        loss = nn.functional.cross_entropy(self.net(x + noise), y)
        if FAULTS.hit("step"):
            FAULTS.die()
        self.log("train_loss", loss)
        self.log("epoch_loss", loss, on_step=False, on_epoch=True)
        if METRIC:
            self.loss_mean(loss.detach() * 1000)
            self.log("metric_loss", self.loss_mean, on_step=False, on_epoch=True)
        if SLEEP:
            time.sleep(SLEEP)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        if FAULTS.hit("val"):
            FAULTS.die()
        self.log("val_loss", nn.functional.cross_entropy(self.net(x), y))

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=0.01)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.StepLR(opt, 4, 0.7),
                                                   "interval": "step"}}


class Faults:
    """Counts the events that ``--fault`` can stop at, and SIGKILLs the process at the chosen one."""

    KINDS = ("step", "val", "save", "flush")

    def __init__(self, spec: str | None) -> None:
        self.counts = dict.fromkeys(self.KINDS, 0)
        self.kind, self.at = (spec.split(":")[0], int(spec.split(":")[1])) if spec else (None, 0)

    def hit(self, kind: str) -> bool:
        """Count an event; True when it is the one to die at (the caller may first do half of its work)."""
        self.counts[kind] += 1
        return kind == self.kind and self.counts[kind] == self.at

    @staticmethod
    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def install(self) -> None:
        """Make checkpoint writes countable (and killable half-way): torch.save into an open file, as
        fulmen.checkpoint.io.atomic_save calls it."""
        import io

        real = torch.save

        def save(obj, f, *args, **kwargs):
            if not hasattr(f, "write") or not self.hit("save"):
                return real(obj, f, *args, **kwargs)
            buffer = io.BytesIO()
            real(obj, buffer, *args, **kwargs)
            data = buffer.getvalue()
            f.write(data[:len(data) // 2])
            f.flush()
            self.die()

        torch.save = save

    def write_counts(self, folder: str) -> None:
        import json

        with open(os.path.join(folder, "counts.json"), "w") as f:
            json.dump(self.counts, f)


FAULTS = Faults(None)


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


class SignalAt(Callback):
    """Send this process ``signum`` at the point where KillAt kills, or during the next validation's first batch."""

    def __init__(self, step: int, signum: int, in_validation: bool) -> None:
        self.step, self.signum, self.in_validation = step, signum, in_validation
        self.armed = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            if self.armed and not self.in_validation:
                os.kill(os.getpid(), self.signum)
            self.armed = True

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.armed and self.in_validation and batch_idx == 0:
            self.in_validation = False
            os.kill(os.getpid(), self.signum)


class EpochLog(Callback):
    """Append each epoch's mean training loss to DIR/epochs.txt (exact: float.hex), across killed and resumed runs."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        with open(self.path, "a") as f:
            f.write(f"{trainer.current_epoch} {float(trainer.callback_metrics['epoch_loss']).hex()}\n")
        if "metric_loss" in trainer.callback_metrics:
            with open(self.path.replace("epochs.txt", "metric_epochs.txt"), "a") as f:
                f.write(f"{trainer.current_epoch} {float(trainer.callback_metrics['metric_loss']).hex()}\n")


def epoch_losses(folder: str, name: str = "epochs.txt") -> dict[int, str]:
    """What EpochLog wrote: epoch -> mean loss (a resumed run's line for an epoch replaces the killed run's);
    ``name="metric_epochs.txt"``: the torchmetrics object's epoch values (with SCENARIO_METRIC=1)."""
    out: dict[int, str] = {}
    with open(os.path.join(folder, name)) as f:
        for line in f:
            epoch, value = line.split()
            out[int(epoch)] = value
    return out


class Started(Callback):
    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == 2 and not os.path.exists(self.path):
            open(self.path, "w").close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--kill-at", type=int, default=None)
    parser.add_argument("--signal-at", type=int, default=None)
    parser.add_argument("--signal-in", choices=["train", "val"], default="train")
    parser.add_argument("--signal", default="SIGTERM")
    parser.add_argument("--fault", default=None)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    global FAULTS
    FAULTS = Faults(args.fault)
    FAULTS.install()
    torch.set_num_threads(1)
    L.seed_everything(7)
    shuffle = os.environ.get("SCENARIO_SHUFFLE", "1") == "1"
    loader_class = DataLoader
    if os.environ.get("SCENARIO_STATEFUL") == "1":  # torchdata's loader, which saves and restores its own position
        from torchdata.stateful_dataloader import StatefulDataLoader as loader_class
    train = loader_class(Data(40), batch_size=4, shuffle=shuffle, num_workers=args.workers)
    val = DataLoader(Data(8), batch_size=4, num_workers=args.workers)
    callbacks: list[Callback] = [Started(os.path.join(args.dir, "started")),
                                 EpochLog(os.path.join(args.dir, "epochs.txt"))]
    if os.environ.get("SCENARIO_CHECKPOINTS", "1") == "1":
        callbacks.append(ModelCheckpoint(dirpath=os.path.join(args.dir, "ckpt"), every_n_train_steps=1, save_top_k=0,
                                         save_last=True))
        # Also a checkpoint after every batch (inside accumulation windows too): "last" resumes from the newest.
        callbacks.append(_EveryBatch(os.path.join(args.dir, "ckpt", "every-batch.ckpt")))
    if args.kill_at is not None:
        callbacks.append(KillAt(args.kill_at))
    if args.signal_at is not None:
        callbacks.append(SignalAt(args.signal_at, getattr(signal, args.signal), args.signal_in == "val"))
    accumulate = int(os.environ.get("SCENARIO_ACCUMULATE", "3"))
    val_interval = float(os.environ.get("SCENARIO_VAL_INTERVAL", "0.5"))
    logger = _FaultyCSV(args.dir) if args.fault else False
    plugins = [AsyncCheckpointIO()] if os.environ.get("SCENARIO_ASYNC") == "1" else None
    trainer = L.Trainer(max_epochs=3, accumulate_grad_batches=accumulate, val_check_interval=val_interval,
                        plugins=plugins, logger=logger, log_every_n_steps=1, enable_progress_bar=False,
                        enable_model_summary=False,
                        callbacks=callbacks, default_root_dir=args.dir, num_sanity_val_steps=0,
                        accelerator=os.environ.get("SCENARIO_ACCELERATOR", "auto"))
    trainer.fit(Net(), train, val, ckpt_path="last" if args.resume else None)
    FAULTS.write_counts(args.dir)
    FAULTS.kind = None  # the final weights below are not a fault point
    final = {name: value.cpu() for name, value in trainer.lightning_module.state_dict().items()}
    torch.save(final, os.path.join(args.dir, "final.pt"))


class _FaultyCSV(CSVLogger):
    """A CSVLogger writing every step, whose N-th write dies half-way through a row when ``--fault flush:N``."""

    def __init__(self, folder: str) -> None:
        super().__init__(folder, flush_logs_every_n_steps=1)

    def save(self) -> None:
        if self.experiment.metrics and FAULTS.hit("flush"):
            with open(self.metrics_file_path, "a") as f:
                f.write("0,0.12")  # half a row, as a crash in the middle of the write leaves it
                f.flush()
            FAULTS.die()
        super().save()


class _EveryBatch(Callback):
    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        trainer.save_checkpoint(self.path)


if __name__ == "__main__":
    main()

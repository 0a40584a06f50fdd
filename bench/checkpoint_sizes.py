"""Checkpoint cost as the state grows: about 30 MB, 300 MB and 1 GB of state (weights and AdamW moments).

For each size, in a fresh process (so that the memory figures start clean), side by side and alternating:

    save       fulmen ``trainer.save_checkpoint`` (atomic: temporary file, fsync, rename), against the hand-written
               equivalent (``torch.save`` of the same dict into a file, then fsync) and pytorch-lightning's
               ``trainer.save_checkpoint`` of the same model
    blocked    the same save through ``AsyncCheckpointIO``: how long the loop waits (and when the file is durable)
    load       ``Net.load_from_checkpoint`` against ``torch.load(weights_only=True)`` + ``load_state_dict``
    memory     the peak resident memory during a save, above the resident memory before it, over the state's size
               (sampled every millisecond from /proc/self/statm): a synchronous save should hold no second copy of
               the state; the first asynchronous save holds one, its snapshot (later ones reuse it)

Medians over ``--rounds``. Run: ``.venv/bin/python bench/checkpoint_sizes.py [--rounds 5] [--dir PATH]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings

WIDTHS = {"30 MB": 1580, "300 MB": 5000, "1 GB": 9150}  # a width x width layer: 3 x 4 x width^2 bytes of state


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """The highest resident memory seen while the block runs, sampled every millisecond by a thread."""

    def __enter__(self) -> "PeakRSS":
        self.before = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def measure(width: int, rounds: int, folder: str) -> dict:
    """One size, in this process: the medians of each measure, and the memory figures."""
    import torch
    from torch import nn

    import fulmen as L
    from fulmen.checkpoint import format as ckpt_format
    from fulmen.plugins.io import AsyncCheckpointIO

    warnings.filterwarnings("ignore")
    logging.disable(logging.INFO)

    def net_class(pl):
        class Net(pl.LightningModule):
            def __init__(self, width: int = width) -> None:
                super().__init__()
                self.save_hyperparameters()
                self.body = nn.Linear(width, width, bias=False)

            def training_step(self, batch, batch_idx):
                return self.body(batch).pow(2).mean()

            def configure_optimizers(self):
                return torch.optim.AdamW(self.parameters(), lr=1e-4)

            def train_dataloader(self):
                return torch.utils.data.DataLoader(torch.randn(2, width), batch_size=2)

        return Net

    def fitted(pl):
        torch.manual_seed(0)
        trainer = pl.Trainer(max_steps=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                             enable_checkpointing=False, default_root_dir=folder, accelerator="cpu", devices=1)
        trainer.fit(net_class(pl)())
        return trainer

    trainer = fitted(L)
    Net = type(trainer.lightning_module)
    checkpoint = ckpt_format.dump(trainer)
    state_bytes = sum(v.numel() * v.element_size() for v in checkpoint["state_dict"].values()) * 3
    try:
        import pytorch_lightning as PL

        theirs_trainer = fitted(PL)
    except ImportError:
        theirs_trainer = None
    background = AsyncCheckpointIO()
    paths = {name: os.path.join(folder, f"{name}.ckpt") for name in ("fulmen", "hand", "lightning", "async")}

    def fresh(path: str) -> None:
        if os.path.exists(path):
            os.remove(path)
        os.sync()

    def hand_save() -> None:
        with open(paths["hand"], "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())

    def async_save() -> tuple[float, float]:
        default = trainer.strategy.checkpoint_io
        trainer.strategy.checkpoint_io = background
        try:
            start = time.perf_counter()
            trainer.save_checkpoint(paths["async"])
            blocked = time.perf_counter() - start
            background.wait()
            return blocked, time.perf_counter() - start
        finally:
            trainer.strategy.checkpoint_io = default

    memory = {}
    fresh(paths["fulmen"])
    with PeakRSS() as sync_peak:
        trainer.save_checkpoint(paths["fulmen"])
    fresh(paths["async"])
    with PeakRSS() as async_peak:
        async_save()
    memory = {"sync": (sync_peak.peak - sync_peak.before) / state_bytes,
              "async": (async_peak.peak - async_peak.before) / state_bytes}

    times: dict[str, list[float]] = {k: [] for k in ("fulmen", "hand", "lightning", "blocked", "durable",
                                                      "load_fulmen", "load_torch")}
    for r in range(rounds):
        saves = [("fulmen", lambda: trainer.save_checkpoint(paths["fulmen"])), ("hand", hand_save)]
        if theirs_trainer is not None:
            saves.append(("lightning", lambda: theirs_trainer.save_checkpoint(paths["lightning"])))
        for name, fn in saves[r % len(saves):] + saves[:r % len(saves)]:
            fresh(paths[name])
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
        fresh(paths["async"])
        blocked, durable = async_save()
        times["blocked"].append(blocked)
        times["durable"].append(durable)
        for name, fn in [("load_fulmen", lambda: Net.load_from_checkpoint(paths["fulmen"])),
                         ("load_torch", lambda: Net(width).load_state_dict(
                             torch.load(paths["hand"], weights_only=True)["state_dict"]))][::1 if r % 2 else -1]:
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    background.teardown()
    medians = {k: statistics.median(v) for k, v in times.items() if v}
    return {"state_mb": state_bytes / 2**20, "file_mb": os.path.getsize(paths["fulmen"]) / 2**20,
            "medians": medians, "memory": memory}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", default=None, help="where the files go (default: a temporary folder)")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # a child process: one width
    args = parser.parse_args()
    if args.one is not None:
        folder = tempfile.mkdtemp(prefix="fulmen-bench-", dir=args.dir)
        try:
            print(json.dumps(measure(args.one, args.rounds, folder)))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    print("| state | fulmen save | / hand-written (torch.save + fsync) | / Lightning | async: loop blocked "
          "(/ sync save) | async: durable (/ sync) | load / torch.load | peak memory over state: sync, async |")
    print("|---|---|---|---|---|---|---|---|")
    for label, width in WIDTHS.items():
        command = [sys.executable, os.path.abspath(__file__), "--one", str(width), "--rounds", str(args.rounds)]
        if args.dir:
            command += ["--dir", args.dir]
        out = subprocess.run(command, capture_output=True, text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        m, mem = result["medians"], result["memory"]
        lightning = f"{m['fulmen'] / m['lightning']:.2f}" if "lightning" in m else "-"
        print(f"| {label} ({result['state_mb']:.0f} MB) | {m['fulmen']:.3f} s | {m['fulmen'] / m['hand']:.2f} | "
              f"{lightning} | {m['blocked']:.3f} s ({m['blocked'] / m['fulmen']:.2f}) | {m['durable']:.3f} s "
              f"({m['durable'] / m['fulmen']:.2f}) | {m['load_fulmen'] / m['load_torch']:.2f} | "
              f"{mem['sync']:.2f}, {mem['async']:.2f} |", flush=True)


if __name__ == "__main__":
    main()

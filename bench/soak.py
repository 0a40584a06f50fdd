"""Soak: a long run of a tiny model with logging every step, a progress bar and a checkpoint every 10,000 steps,
watching the process's memory and the step time for growth and drift.

    .venv/bin/python bench/soak.py [--steps 1000000] [--every 10000] [--dir /tmp/soak]

Every ``--every`` steps it records the resident memory (RSS) and the mean step time of the last window. At the end
it prints the windows and two figures: the memory growth from the end of the warm-up (the first tenth of the run)
to the end, in percent, and the step time of the last tenth of the run over that of the second tenth.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

import fulmen as L  # noqa: E402
from fulmen.callbacks import Callback, ModelCheckpoint, TQDMProgressBar  # noqa: E402
from fulmen.loggers import CSVLogger  # noqa: E402
from overhead import classifier  # noqa: E402  (the overhead bench's model: MLP 32-64-4, SGD)


class Probe(Callback):
    """Every ``every`` steps: the RSS and the mean step time since the last probe."""

    def __init__(self, every: int) -> None:
        import psutil

        self.process = psutil.Process()
        self.every = every
        self.windows: list[tuple[int, float, float]] = []  # (step, RSS in MiB, µs per step)
        self.last = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step % self.every == 0:
            now = time.perf_counter()
            rss = self.process.memory_info().rss / 2**20
            self.windows.append((step, rss, (now - self.last) / self.every * 1e6))
            self.last = now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--every", type=int, default=10_000)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    L.seed_everything(0)
    folder = args.dir or tempfile.mkdtemp(prefix="fulmen-soak-")
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(32, 32, generator=g), torch.randint(0, 4, (32,), generator=g)) for _ in range(1000)]
    probe = Probe(args.every)
    trainer = L.Trainer(max_steps=args.steps, max_epochs=-1, logger=CSVLogger(folder), enable_model_summary=False,
                        callbacks=[probe, TQDMProgressBar(plain=True),
                                   ModelCheckpoint(dirpath=os.path.join(folder, "ckpt"),
                                                   every_n_train_steps=args.every, save_last=True)],
                        limit_val_batches=0, num_sanity_val_steps=0)
    start = time.perf_counter()
    stdout = sys.stdout
    with open(os.devnull, "w") as quiet:  # the bar's lines: it runs, nobody reads them
        sys.stdout = sys.stderr = quiet
        try:
            trainer.fit(classifier(L, log="train_loss")(), data)
        finally:
            sys.stdout, sys.stderr = stdout, sys.__stderr__
    total = time.perf_counter() - start

    windows = probe.windows
    print(f"{'step':>9} {'RSS MiB':>8} {'µs/step':>8}")
    for step, rss, us in windows:
        print(f"{step:>9} {rss:>8.1f} {us:>8.1f}")
    tenth = max(len(windows) // 10, 1)
    warm_rss = windows[tenth - 1][1]
    growth = (windows[-1][1] - warm_rss) / warm_rss * 100
    early = sum(w[2] for w in windows[tenth:2 * tenth]) / len(windows[tenth:2 * tenth])
    late = sum(w[2] for w in windows[-tenth:]) / tenth
    print(f"\n{args.steps} steps in {total:.0f} s; checkpoints in {folder}")
    print(f"memory: {warm_rss:.1f} MiB after warm-up (step {windows[tenth - 1][0]}), {windows[-1][1]:.1f} MiB at "
          f"the end: growth {growth:+.2f}%")
    print(f"step time: {early:.1f} µs (second tenth), {late:.1f} µs (last tenth): ratio {late / early:.3f}")


if __name__ == "__main__":
    main()

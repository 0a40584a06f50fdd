"""Per-step overhead: fulmen fit against a hand-written PyTorch loop (and pytorch-lightning, when installed).

Same tiny MLP, the same pre-batched tensors, one thread. The runs alternate within one process, over many short
rounds; a round runs the raw loop and a framework in the order ABBA (the next one BAAB), and its ratio is the
framework's two times over the raw loop's two. Reported, with and without ``self.log(..., prog_bar=True)`` every
step: the median of the per-round ratios, and the ratio of the framework's fastest run to the raw loop's fastest
(the least disturbed by other work on a shared machine).
Run: ``.venv/bin/python bench/overhead.py [--steps 500] [--rounds 21]``. Timings are never asserted in tests.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import statistics
import time
import warnings
from typing import Any, Callable, Optional

# One thread everywhere, set before torch (and the numpy it loads) start their pools: idle pools that spin take
# CPU from the loop being timed on a 2-core machine.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import torch  # noqa: E402
from torch import nn  # noqa: E402

torch.set_num_threads(1)
warnings.filterwarnings("ignore")
logging.disable(logging.INFO)


def make_data(steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(32, 32, generator=g), torch.randint(0, 4, (32,), generator=g)) for _ in range(steps)]


class Batches:
    """The pre-made batches as one iterable with a length (a plain list would read as several loaders)."""

    def __init__(self, batches: list) -> None:
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 4))


def raw_loop(data: list, log: bool) -> float:
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    kept = []
    start = time.perf_counter()
    for x, y in data:
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if log:
            kept[:] = [loss.detach()]  # what a careful hand-written loop keeps for its progress print
    return time.perf_counter() - start


def classifier(pl: Any, net: Callable[[], nn.Module] = mlp, log: Optional[str] = "loss") -> type:
    """The benches' LightningModule class for ``pl`` (fulmen or pytorch_lightning): ``net()`` trained with
    cross-entropy and SGD (lr 0.01), its loss logged every step as ``log`` with ``prog_bar`` (None: not logged)."""

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = net()

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = nn.functional.cross_entropy(self.net(x), y)
            if log is not None:
                self.log(log, loss, prog_bar=True)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    return Module


def framework_loop(package: str, data: list, log: bool) -> float:
    pl = importlib.import_module(package)
    Module = classifier(pl, log="loss" if log else None)
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu", devices=1)
    module = Module()
    start = time.perf_counter()
    trainer.fit(module, train_dataloaders=Batches(data))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=21)
    args = parser.parse_args()
    data = make_data(args.steps)
    frameworks = ["fulmen"]
    try:
        importlib.import_module("pytorch_lightning")
        frameworks.append("pytorch_lightning")
    except ImportError:
        pass
    for log in (False, True):
        raw = lambda: raw_loop(data, log)  # noqa: E731
        raw()  # warm-up
        label = "with self.log(prog_bar=True) every step" if log else "without logging"
        fastest_raw = float("inf")
        results = []
        for f in frameworks:
            run = lambda f=f: framework_loop(f, data, log)  # noqa: E731
            run()  # warm-up
            ratios, fastest = [], float("inf")
            for i in range(args.rounds):
                # ABBA (then BAAB): a slowdown of the shared machine that lasts a few runs, or grows steadily,
                # weighs on both loops alike, as each pair of runs sits around the same moment.
                order = (raw, run, run, raw) if i % 2 == 0 else (run, raw, raw, run)
                times = {raw: 0.0, run: 0.0}
                for fn in order:
                    t = fn()
                    times[fn] += t
                    if fn is raw:
                        fastest_raw = min(fastest_raw, t)
                    else:
                        fastest = min(fastest, t)
                ratios.append(times[run] / times[raw])
            results.append((f, statistics.median(ratios), fastest))
        print(f"{label}: raw loop {fastest_raw / args.steps * 1e6:.1f} us/step (fastest run)")
        for f, median, fastest in results:
            print(f"  {f:18s} / raw: median of rounds {median:.3f}, fastest runs {fastest / fastest_raw:.3f}")


if __name__ == "__main__":
    main()

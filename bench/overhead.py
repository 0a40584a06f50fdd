"""Per-step overhead: fulmen fit against a hand-written PyTorch loop (and pytorch-lightning, when installed).

Same tiny MLP, the same pre-batched tensors, one thread. The runs alternate within one process, over many short
rounds; a round runs the raw loop and a framework in the order ABBA (the next one BAAB), and its ratio is the
framework's two times over the raw loop's two. Reported, with and without ``self.log(..., prog_bar=True)`` every
step: the median and quartiles of the per-round ratios, and the ratio of the framework's fastest run to the raw
loop's fastest (the least disturbed by other work on a shared machine). The raw loop is also measured against
itself, the same way: that control shows how far apart identical loops come out on the machine at the time.
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


def available_frameworks() -> list[str]:
    """fulmen, and pytorch_lightning when it is installed (a development dependency)."""
    try:
        importlib.import_module("pytorch_lightning")
    except ImportError:
        return ["fulmen"]
    return ["fulmen", "pytorch_lightning"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=21)
    args = parser.parse_args()
    data = make_data(args.steps)
    frameworks = available_frameworks()
    for log in (False, True):
        label = "with self.log(prog_bar=True) every step" if log else "without logging"
        raw = Timed(lambda: raw_loop(data, log))
        # The raw loop against itself first: how far apart two identical loops come out on this machine now.
        control = Timed(lambda: raw_loop(data, log))
        contenders = [("raw (again)", control)] + [
            (f, Timed(lambda f=f: framework_loop(f, data, log))) for f in frameworks]
        results = [(name, abba(raw, other, args.rounds), other) for name, other in contenders]
        print(f"{label}: raw loop {raw.fastest / args.steps * 1e6:.1f} us/step (fastest run)")
        for name, ratios, other in results:
            q1, median, q3 = statistics.quantiles(ratios, n=4)
            print(f"  {name:18s} / raw: median of rounds {median:.3f} (quartiles {q1:.3f}-{q3:.3f}), fastest runs "
                  f"{other.fastest / raw.fastest:.3f}")
    # What logging itself costs fulmen, without the raw loop's noise in the ratio.
    quiet, logged = (Timed(lambda log=log: framework_loop("fulmen", data, log)) for log in (False, True))
    q1, median, q3 = statistics.quantiles(abba(quiet, logged, args.rounds), n=4)
    print(f"fulmen with self.log(prog_bar=True) every step / fulmen without: median of rounds {median:.3f} "
          f"(quartiles {q1:.3f}-{q3:.3f})")


class Timed:
    """A loop to time, with the fastest time it took."""

    def __init__(self, fn: Callable[[], float]) -> None:
        self.fn = fn
        self.fastest = float("inf")
        fn()  # warm-up

    def __call__(self) -> float:
        t = self.fn()
        self.fastest = min(self.fastest, t)
        return t


def abba(a: Timed, b: Timed, rounds: int) -> list[float]:
    """Per round, b's time over a's, the two run in the order ABBA (the next round BAAB): a slowdown of the shared
    machine that lasts a few runs, or grows steadily, weighs on both alike, as each pair sits around one moment."""
    ratios = []
    for i in range(rounds):
        order = (a, b, b, a) if i % 2 == 0 else (b, a, a, b)
        times = {a: 0.0, b: 0.0}
        for fn in order:
            times[fn] += fn()
        ratios.append(times[b] / times[a])
    return ratios


if __name__ == "__main__":
    main()

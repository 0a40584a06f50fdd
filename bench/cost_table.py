"""How cost grows: a training step with 0, 1, 10 and 50 metrics logged, the validation loop and the predict loop,
each per batch, fulmen and pytorch-lightning against the hand-written loop that does the same work. (Checkpoint
costs are ``bench/checkpoint.py``'s, resume ``bench/resume_skip.py``'s, DDP ``bench/ddp.py``'s.)

Same tiny MLP and pre-made batches as ``bench/overhead.py``, one thread, rounds in the order ABBA against the
hand-written loop (``overhead.abba``); reported: the median of the per-round ratios, and the hand-written loop's time
per batch. What each hand-written loop does:

    train, n metrics   forward, cross_entropy, zero_grad, backward, step; and for each of the n metrics what
                       ``self.log(name, loss, on_step=True, on_epoch=True)`` keeps: the step value (detached) and a
                       running sum weighted by the batch size, on the device; the epoch means read once at the end
    validation         ``torch.no_grad()``: forward, cross_entropy, the same running sum for one logged metric
    predict            ``torch.no_grad()``: forward, outputs kept in a list

Run: ``.venv/bin/python bench/cost_table.py [--steps 300] [--rounds 9]``. Timings are never asserted in tests.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import overhead  # noqa: E402  (sets one thread everywhere before torch starts)
import torch  # noqa: E402
from torch import nn  # noqa: E402

METRICS = (0, 1, 10, 50)


def module_class(pl, n_metrics: int) -> type:
    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = overhead.mlp()

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = nn.functional.cross_entropy(self.net(x), y)
            for k in range(n_metrics):
                self.log(f"m{k}", loss, on_step=True, on_epoch=True)
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_loss", nn.functional.cross_entropy(self.net(x), y))

        def predict_step(self, batch, batch_idx):
            return self.net(batch[0])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    return Module


def hand_train(data: list, n_metrics: int) -> float:
    model = overhead.mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    last = [None] * n_metrics
    sums = [torch.zeros(()) for _ in range(n_metrics)]
    seen = 0
    start = time.perf_counter()
    for x, y in data:
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        value = loss.detach()
        for k in range(n_metrics):
            last[k] = value
            sums[k].add_(value, alpha=len(x))  # one op, as self.log's running sum
        seen += len(x)
    [float(s / seen) for s in sums]  # the epoch means, read once
    return time.perf_counter() - start


def hand_validate(data: list) -> float:
    model = overhead.mlp()
    total, seen = torch.zeros(()), 0
    start = time.perf_counter()
    model.eval()
    with torch.no_grad():
        for x, y in data:
            total.add_(nn.functional.cross_entropy(model(x), y), alpha=len(x))
            seen += len(x)
    float(total / seen)
    model.train()
    return time.perf_counter() - start


def hand_predict(data: list) -> float:
    model = overhead.mlp()
    start = time.perf_counter()
    model.eval()
    with torch.no_grad():
        outputs = [model(x) for x, _ in data]
    model.train()
    assert len(outputs) == len(data)
    return time.perf_counter() - start


def framework(package: str, what: str, data: list, n_metrics: int = 1) -> float:
    pl = importlib.import_module(package)
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0 if what == "train"
                         else None, accelerator="cpu", devices=1)
    module = module_class(pl, n_metrics)()
    loader = overhead.Batches(data)
    start = time.perf_counter()
    if what == "train":
        trainer.fit(module, train_dataloaders=loader)
    elif what == "validate":
        trainer.validate(module, dataloaders=loader, verbose=False)
    else:
        trainer.predict(module, dataloaders=loader)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    data = overhead.make_data(args.steps)
    # Evaluation batches cost a sixth of a training step: more of them, so that the per-run set-up (the same
    # for every length) weighs as little as it does in the training rows.
    eval_data = overhead.make_data(args.steps * 6)
    packages = overhead.available_frameworks()
    rows = [(f"training step, {n} metric(s) logged", lambda n=n: hand_train(data, n),
             lambda p, n=n: framework(p, "train", data, n)) for n in METRICS]
    rows += [("validation loop, 1 metric logged", lambda: hand_validate(eval_data),
              lambda p: framework(p, "validate", eval_data)),
             ("predict loop", lambda: hand_predict(eval_data), lambda p: framework(p, "predict", eval_data))]
    print("| row | hand-written, us/batch | " + " | ".join(f"{p} / hand-written" for p in packages) + " |")
    print("|---|---|" + "---|" * len(packages))
    for label, hand, other in rows:
        baseline = overhead.Timed(hand)
        ratios = []
        for package in packages:
            contender = overhead.Timed(lambda package=package: other(package))
            ratios.append(statistics.median(overhead.abba(baseline, contender, args.rounds)))
        per_batch = baseline.fastest / (args.steps if label.startswith("training") else len(eval_data)) * 1e6
        print(f"| {label} | {per_batch:.0f} | " + " | ".join(f"{r:.3f}" for r in ratios) + " |", flush=True)


if __name__ == "__main__":
    main()

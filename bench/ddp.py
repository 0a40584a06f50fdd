"""Time per step of 2-process DDP on the CPU (gloo): fulmen against a hand-written DDP loop, alternating runs.

``python bench/ddp.py [--rounds 5] [--steps 300]`` runs each loop ``--rounds`` times as its own 2-process job
(``--mode fulmen``: a plain script that fulmen's launcher turns into 2 processes; ``--mode raw``: a hand-written
DistributedDataParallel loop whose rank 0 starts rank 1 the same way) and reports the median of the per-round
ratios of the time per step, measured on rank 0 after a warm-up. Both use the same MLP, pre-made batches (each rank
its own half), SGD and one thread per process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import torch  # noqa: E402
from torch import nn  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
WARMUP = 20


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(128, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))


def batches(steps: int, rank: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(rank)
    return [(torch.randn(64, 128, generator=g), torch.randint(0, 10, (64,), generator=g)) for _ in range(steps)]


def raw(steps: int) -> None:
    import torch.distributed as dist

    rank = int(os.environ.get("LOCAL_RANK", 0))
    if rank == 0:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ.get("MASTER_PORT", "29533"))
        child = subprocess.Popen([sys.executable, *sys.argv], env=dict(os.environ, LOCAL_RANK="1"))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.set_num_threads(1)
    model = nn.parallel.DistributedDataParallel(mlp())
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    kept = []
    for i, (x, y) in enumerate(batches(steps, rank)):
        if i == WARMUP:
            start = time.perf_counter()
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        kept[:] = [loss.detach()]
    elapsed = time.perf_counter() - start
    dist.barrier()
    if rank == 0:
        print(f"TIME {elapsed / (steps - WARMUP)}")
        child.wait()
    dist.destroy_process_group()


def fulmen_run(steps: int) -> None:
    import fulmen
    from overhead import Batches, classifier  # (bench/ is this script's folder)

    Lit = classifier(fulmen, net=mlp)

    class Clock(fulmen.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == WARMUP:
                self.start = time.perf_counter()

        def on_train_end(self, trainer, pl_module):
            if trainer.is_global_zero:
                print(f"TIME {(time.perf_counter() - self.start) / (steps - WARMUP)}")

    torch.set_num_threads(1)
    trainer = fulmen.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=1, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                             use_distributed_sampler=False, callbacks=[Clock()])
    rank = int(os.environ.get("LOCAL_RANK", 0))
    trainer.fit(Lit(), train_dataloaders=Batches(batches(steps, rank)))


def measure(mode: str, steps: int) -> float:
    from fulmen.plugins.environments import free_port

    env = dict(os.environ, MASTER_PORT=str(free_port()), PYTHONWARNINGS="ignore")
    env.pop("LOCAL_RANK", None)
    out = subprocess.run([sys.executable, os.path.join(HERE, "ddp.py"), "--mode", mode, "--steps", str(steps)],
                         env=env, capture_output=True, text=True, check=True).stdout
    return float(next(line.split()[1] for line in out.splitlines() if line.startswith("TIME")))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["fulmen", "raw"])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if args.mode == "raw":
        raw(args.steps)
        return
    if args.mode == "fulmen":
        fulmen_run(args.steps)
        return
    sys.path.insert(0, os.path.dirname(HERE))
    times: dict[str, list[float]] = {"raw": [], "fulmen": []}
    for i in range(args.rounds):
        for mode in (["raw", "fulmen"] if i % 2 == 0 else ["fulmen", "raw"]):
            times[mode].append(measure(mode, args.steps))
    ratios = [f / r for f, r in zip(times["fulmen"], times["raw"])]
    print(f"2-process DDP on the CPU (gloo), MLP 128-256-256-10, batch 64 per process, {args.steps - WARMUP} timed "
          f"steps, {args.rounds} rounds")
    print(f"  raw loop: {min(times['raw']) * 1e3:.3f} ms/step (fastest round); fulmen: "
          f"{min(times['fulmen']) * 1e3:.3f} ms/step")
    print(f"  fulmen / raw: median of rounds {statistics.median(ratios):.3f}, fastest rounds "
          f"{min(times['fulmen']) / min(times['raw']):.3f}")


if __name__ == "__main__":
    main()

"""Fault injection: SIGKILL a training run at points chosen at random (in a training step, in a validation step,
half-way through a checkpoint write, half-way through a logger write), resume it with ``ckpt_path="last"``, and
check that it ends with the weights of a run never stopped and that every checkpoint left on disk loads.

    python tests/faults.py [--points 60] [--seed 2026] [--jobs 2] [--async]   # `make faults`: every point, a table

``--async`` writes the checkpoints with AsyncCheckpointIO: a "save" point then kills the process half-way through a
background write, while the loop has gone on training.

``tests/test_faults.py`` runs a sample of the same points in ``make test``.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "tests" / "resume_scenario.py"
# How many events of each kind the scenario's run has (tests/resume_scenario.py writes them to counts.json; the
# test checks that these still hold).
COUNTS = {"step": 30, "val": 12, "save": 42, "flush": 21}


def points(n: int = 60, seed: int = 2026) -> list[tuple[str, int]]:
    """``n`` fault points (kind, which event), drawn with a fixed seed: the same list on every machine."""
    rng = random.Random(seed)
    kinds = sorted(COUNTS)  # in turn, so that each kind gets a quarter of the points
    return [(kind, rng.randint(1, COUNTS[kind])) for kind in (kinds[i % len(kinds)] for i in range(n))]


def run(folder: Path, *args: str, async_io: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore",
               SCENARIO_ASYNC="1" if async_io else "0")
    return subprocess.run([sys.executable, str(SCENARIO), str(folder), *args], env=env, capture_output=True,
                          text=True, timeout=300)


def reference(folder: Path) -> dict[str, torch.Tensor]:
    """The weights of the run never stopped (with the logger the faulty runs have); its counts.json checked."""
    done = run(folder, "--fault", "none:0")
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    import json

    counts = json.loads((folder / "counts.json").read_text())
    if counts != COUNTS:
        raise RuntimeError(f"the scenario's events changed to {counts}; update COUNTS in {__file__}")
    return torch.load(folder / "final.pt", weights_only=True)


@dataclass
class Outcome:
    kind: str
    at: int
    killed: bool  # the first run died by SIGKILL where it was told to
    resumed: bool  # the second run finished
    same_weights: bool
    checkpoints: int  # checkpoint files on disk after the kill
    unloadable: list[str]  # those that did not load with weights_only=True
    seconds: float
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.killed and self.resumed and self.same_weights and not self.unloadable


def check_point(kind: str, at: int, folder: Path, expected: dict[str, torch.Tensor],
                async_io: bool = False) -> Outcome:
    """Kill the run at the ``at``-th event of ``kind``, check the checkpoints left, resume, compare the weights
    with ``expected`` (``async_io``: both runs write their checkpoints in the background)."""
    start = time.perf_counter()
    first = run(folder, "--fault", f"{kind}:{at}", async_io=async_io)
    killed = first.returncode == -signal.SIGKILL
    files = sorted(folder.rglob("*.ckpt"))
    unloadable = []
    for path in files:
        try:
            torch.load(path, weights_only=True)
        except Exception:  # noqa: BLE001 - any failure to load is what this looks for
            unloadable.append(str(path.relative_to(folder)))
    second = run(folder, "--fault", "none:0", "--resume", async_io=async_io)
    resumed = second.returncode == 0
    same = False
    if resumed:
        final = torch.load(folder / "final.pt", weights_only=True)
        same = final.keys() == expected.keys() and all(torch.equal(final[k], expected[k]) for k in final)
    error = "" if resumed else second.stderr[-1500:]
    if not killed:
        error = f"the faulty run exited with {first.returncode}: {first.stderr[-1500:]}"
    return Outcome(kind, at, killed, resumed, same, len(files), unloadable, time.perf_counter() - start, error)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=60)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--async", dest="async_io", action="store_true")
    args = parser.parse_args(argv)
    chosen = points(args.points, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        expected = reference(Path(tmp) / "reference")
        folders = [Path(tmp) / f"{i:03d}" for i in range(len(chosen))]
        for folder in folders:
            folder.mkdir()
        with ThreadPoolExecutor(args.jobs) as pool:
            outcomes = list(pool.map(lambda job: check_point(*job[0], job[1], expected, args.async_io),
                                     zip(chosen, folders)))
    print(f"{'#':>3}  {'kill in':<6} {'event':>5}  {'killed':<6} {'resumed':<7} {'weights':<9} "
          f"{'ckpt files':>10} {'unloadable':>10} {'seconds':>7}")
    for i, o in enumerate(outcomes):
        print(f"{i:>3}  {o.kind:<6} {o.at:>5}  {'yes' if o.killed else 'NO':<6} {'yes' if o.resumed else 'NO':<7} "
              f"{'same' if o.same_weights else 'DIFFER':<9} {o.checkpoints:>10} {len(o.unloadable):>10} "
              f"{o.seconds:>7.1f}")
        if o.error:
            print("     ", o.error.strip().replace("\n", "\n      "))
    bad = [o for o in outcomes if not o.ok]
    print(f"\n{len(outcomes) - len(bad)} of {len(outcomes)} fault points resumed to the same weights with every "
          "checkpoint on disk loadable")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

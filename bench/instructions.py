"""Instructions per training step, counted by valgrind (deterministic, unlike timings on a shared machine).

Each loop runs twice, for ``--short`` and ``--long`` steps, under ``valgrind --tool=callgrind``; the difference of
the two totals divided by the difference of the step counts is the cost of one step, start-up and per-fit set-up
cancelled out. The garbage collector is off and the BLAS/OpenMP pools have one thread, as both would otherwise add
tens of thousands of instructions per step at random; the hash seed is fixed. Counts still differ by about 1%
between runs of the script. Needs valgrind. Slow: about a minute and a half per run, eight runs.
Run: ``.venv/bin/python bench/instructions.py [--short 100] [--long 400]``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def count(loop: str, log: bool, steps: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        # The garbage collector is off during the loop: whether a collection of torch's large heap falls inside
        # the longer run or not would otherwise swing the count by tens of thousands of instructions per step.
        code = (f"import sys, gc; sys.path.insert(0, {HERE!r}); import overhead as o; d = o.make_data({steps}); "
                "gc.collect(); gc.disable(); "
                + ("o.raw_loop(d, %r)" % log if loop == "raw" else f"o.framework_loop({loop!r}, d, {log!r})"))
        # Thread pools that spin while idle (numpy's OpenBLAS, OpenMP) would add their spinning to the count.
        # A fixed hash seed: string hashing decides dict layouts, and so how much work each lookup takes.
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "PYTHONHASHSEED": "0"}
        proc = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-c",
                               code], capture_output=True, text=True, check=True, env=env)
        match = re.search(r"Collected : (\d+)", proc.stderr)
        assert match, proc.stderr[-2000:]
        return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--short", type=int, default=100)
    parser.add_argument("--long", type=int, default=400)
    parser.add_argument("--loops", default="raw,fulmen")
    parser.add_argument("--logging", choices=["both", "off", "on"], default="both",
                        help="measure without self.log, with it, or both (each half takes about ten minutes)")
    args = parser.parse_args()
    for log in {"both": (False, True), "off": (False,), "on": (True,)}[args.logging]:
        per_step = {}
        for loop in args.loops.split(","):
            per_step[loop] = (count(loop, log, args.long) - count(loop, log, args.short)) / (args.long - args.short)
        label = "with self.log(prog_bar=True) every step" if log else "without logging"
        raw = per_step.pop("raw")
        print(f"{label}: raw loop {raw / 1e3:.0f} k instructions/step")
        for loop, value in per_step.items():
            print(f"  {loop:18s} / raw = {value / raw:.4f}  (+{(value - raw) / 1e3:.1f} k instructions/step)")


if __name__ == "__main__":
    main()

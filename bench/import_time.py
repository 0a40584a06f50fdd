"""What ``import fulmen`` costs on top of ``import torch`` (fresh interpreters, median of several runs).

Run: ``.venv/bin/python bench/import_time.py [--runs 7]``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys


def timed(statement: str) -> float:
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    extra = {}
    for name, stmt in (("fulmen", "import fulmen"), ("pytorch_lightning", "import pytorch_lightning")):
        try:
            both = [timed(f"import torch; t2 = time.perf_counter(); {stmt}; t = t2") for _ in range(args.runs)]
        except subprocess.CalledProcessError:
            continue
        extra[name] = statistics.median(both)
    torch_alone = statistics.median(timed("import torch") for _ in range(args.runs))
    print(f"import torch: {torch_alone * 1000:.0f} ms")
    for name, seconds in extra.items():
        print(f"import {name} after torch: +{seconds * 1000:.0f} ms")


if __name__ == "__main__":
    main()

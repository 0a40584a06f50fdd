"""Plot the metrics of one or several runs into a PNG: ``fulmen plot <log_dir> [<log_dir> ...]`` or
``python -m fulmen.plot``.

A run is a folder with a ``metrics.csv`` (CSVLogger) or TensorBoard event files (TensorBoardLogger); a folder of
``version_N`` runs (``lightning_logs``) means each of them. Metrics are grouped into families by name without the
stage and the step/epoch suffix (``train_loss``, ``val_loss``, ``train_loss_epoch`` -> ``loss``), one panel each,
train and validation curves together, against the step (or ``--x epoch``). matplotlib is an extra
(``pip install 'fulmen[plot]'``).
"""

from __future__ import annotations

import argparse
import csv
import glob
import os
import re
import sys
from collections import defaultdict
from typing import Iterable, Optional, Sequence

Series = dict[str, list[tuple[float, float]]]  # metric name -> [(x, value)]
_STAGES = ("train", "training", "val", "valid", "validation", "test", "predict")
_IGNORED = {"epoch", "step", "hp_metric"}


def find_runs(paths: Sequence[str]) -> list[str]:
    """The run folders in ``paths``: each one itself if it holds metrics, else its ``version_*`` folders."""
    runs = []
    for path in paths:
        if not os.path.isdir(path):
            raise FileNotFoundError(f"fulmen plot: {path!r} is not a folder; pass a log folder such as "
                                    "lightning_logs/version_0")
        if _has_metrics(path):
            runs.append(path)
            continue
        found = sorted((p for p in glob.glob(os.path.join(path, "*")) if os.path.isdir(p) and _has_metrics(p)),
                       key=_version_order)
        if not found:
            raise FileNotFoundError(f"fulmen plot: no metrics.csv or TensorBoard event file in {path!r} or its "
                                    "subfolders")
        runs.extend(found)
    return runs


def _version_order(path: str) -> tuple[int, str]:
    match = re.search(r"version_(\d+)$", path)
    return (int(match.group(1)) if match else -1, path)


def _has_metrics(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, "metrics.csv")) or bool(glob.glob(os.path.join(folder, "events.out.*")))


def read_run(folder: str, x: str = "step") -> Series:
    """Every metric of a run as (x, value) points, from metrics.csv or else the TensorBoard events."""
    if os.path.isfile(os.path.join(folder, "metrics.csv")):
        return _read_csv(os.path.join(folder, "metrics.csv"), x)
    return _read_events(folder, x)


def _read_csv(path: str, x: str) -> Series:
    series: Series = defaultdict(list)
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            position = row.get(x)
            if position in (None, ""):
                continue
            for name, value in row.items():
                if name in _IGNORED or value in (None, ""):
                    continue
                series[name].append((float(position), float(value)))
    return dict(series)


def _read_events(folder: str, x: str) -> Series:
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError as err:
        raise ImportError(f"fulmen plot: {folder!r} holds TensorBoard events, which need the tensorboard package: "
                          "pip install 'fulmen[tensorboard]'") from err
    accumulator = EventAccumulator(folder, size_guidance={"scalars": 0})
    accumulator.Reload()
    tags = accumulator.Tags()["scalars"]
    epochs = {e.step: e.value for e in accumulator.Scalars("epoch")} if "epoch" in tags else {}
    series: Series = {}
    for tag in tags:
        if tag in _IGNORED:
            continue
        points = []
        for event in accumulator.Scalars(tag):
            position = event.step if x == "step" else epochs.get(event.step)
            if position is not None:
                points.append((float(position), float(event.value)))
        series[tag] = points
    return series


def family(name: str) -> str:
    """``train_loss``, ``val/loss``, ``loss_epoch`` -> ``loss``: the metric without its stage and step/epoch part."""
    base = re.sub(r"[_/](step|epoch)$", "", name)
    for stage in _STAGES:
        for sep in ("_", "/", "-"):
            if base.startswith(stage + sep):
                return base[len(stage) + 1:]
            if base.endswith(sep + stage):
                return base[:-len(stage) - 1]
    return base


_EVAL_STAGES = ("val", "valid", "validation", "test")


def missing_training_note(names: Iterable[str]) -> str:
    """A sentence for the figure when the runs hold evaluation curves only (no value logged during training
    steps), saying why that usually is; empty when training values are there."""
    for name in names:
        first = re.split(r"[/_\-]", name, maxsplit=1)[0].lower()
        if first not in _EVAL_STAGES:
            return ""
    return ("No training values were logged: step values reach the logger every Trainer(log_every_n_steps) "
            "steps (50 by default), so a run with fewer steps has none. Lower log_every_n_steps, or log with "
            "on_epoch=True.")


def plot(paths: Sequence[str], out: Optional[str] = None, x: str = "step") -> str:
    """Draw the runs in ``paths`` into a PNG (default ``metrics.png`` in the single run's folder, else here);
    returns its path."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError("fulmen plot needs matplotlib: pip install 'fulmen[plot]'") from err
    if x not in ("step", "epoch"):
        raise ValueError(f"fulmen plot: x={x!r} is not supported; use 'step' or 'epoch'")
    runs = find_runs(paths)
    families: dict[str, list[tuple[str, str, list[tuple[float, float]]]]] = defaultdict(list)
    for run in runs:
        label = os.path.basename(os.path.normpath(run)) if len(runs) > 1 else ""
        for name, points in sorted(read_run(run, x).items()):
            if points:
                families[family(name)].append((label, name, sorted(points)))
    if not families:
        raise ValueError(f"fulmen plot: the runs {runs} hold no metrics to draw")
    note = missing_training_note(name for members in families.values() for _, name, _ in members)
    names = sorted(families)
    columns = min(3, len(names))
    rows = -(-len(names) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.6 * rows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, names):
        for label, metric, points in families[name]:
            xs, ys = zip(*points)
            style = "o-" if len(points) < 30 else "-"
            ax.plot(xs, ys, style, markersize=3, linewidth=1.2, label=f"{label} {metric}".strip())
        ax.set_title(name)
        ax.set_xlabel(x)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    if note:  # said in the figure, under the panels, and in the PNG's description
        fig.subplots_adjust(bottom=0.1 + 0.12 / rows)
        fig.text(0.5, 0.01, note, ha="center", va="bottom", fontsize=9, style="italic", wrap=True)
    target = out or (os.path.join(runs[0], "metrics.png") if len(runs) == 1 else "metrics.png")
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    fig.savefig(target, dpi=110, metadata={"Description": note} if note else None)
    plt.close(fig)
    return target


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="fulmen plot", description="Plot the metrics of runs into a PNG.")
    parser.add_argument("log_dirs", nargs="+", help="run folders (with metrics.csv or TensorBoard events), or "
                                                     "folders of version_N runs")
    parser.add_argument("-o", "--out", help="the PNG to write (default: metrics.png in the run folder)")
    parser.add_argument("--x", choices=["step", "epoch"], default="step", help="the x axis")
    args = parser.parse_args(argv)
    try:
        path = plot(args.log_dirs, args.out, args.x)
    except (FileNotFoundError, ValueError, ImportError) as err:
        print(err, file=sys.stderr)
        return 2
    note = missing_training_note(name for run in find_runs(args.log_dirs) for name in read_run(run, args.x))
    if note:
        print(f"fulmen plot: {note}", file=sys.stderr)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

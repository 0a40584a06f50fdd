"""CSVLogger: metrics to ``metrics.csv`` and hyperparameters to ``hparams.yaml``, in ``save_dir/name/version_N``."""

from __future__ import annotations

import csv
import os
from argparse import Namespace
from typing import Any, Optional, Union
from typing_extensions import override

from fulmen.checkpoint.io import makedirs
from fulmen.core.saving import to_yaml
from fulmen.loggers.logger import LOG_DIR_FIX, Logger, VersionedFolder, params_as_dict, rank_zero_experiment
from fulmen.utilities.rank_zero import rank_zero_only


class ExperimentWriter:
    """What ``CSVLogger.experiment`` is: it writes ``log_dir/metrics.csv`` (one row per ``log_metrics`` call, sorted
    columns, ``step`` last) and ``log_dir/hparams.yaml``. Rows wait in ``metrics`` until ``save()``."""

    NAME_METRICS_FILE = "metrics.csv"
    NAME_HPARAMS_FILE = "hparams.yaml"

    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir
        self.metrics_file_path = os.path.join(log_dir, self.NAME_METRICS_FILE)
        self.metrics: list[dict[str, Any]] = []
        self.metrics_keys: list[str] = []
        self.hparams: dict[str, Any] = {}
        makedirs(log_dir, LOG_DIR_FIX)

    def log_hparams(self, params: dict[str, Any]) -> None:
        """Add ``params`` to the hyperparameters and write ``hparams.yaml``."""
        self.hparams.update(params)
        makedirs(self.log_dir, LOG_DIR_FIX)
        with open(os.path.join(self.log_dir, self.NAME_HPARAMS_FILE), "w") as f:
            f.write(to_yaml(self.hparams))

    def log_metrics(self, metrics_dict: dict[str, Any], step: Optional[int] = None) -> None:
        """Keep one row (numbers; tensors as their value) to write at the next ``save``."""
        row = {k: v.item() if hasattr(v, "item") else v for k, v in metrics_dict.items()}
        row["step"] = step
        self.metrics.append(row)

    def save(self) -> None:
        """Append the rows kept so far to ``metrics.csv``; a new column rewrites the file with the wider header."""
        if not self.metrics:
            return
        makedirs(self.log_dir, LOG_DIR_FIX)
        path = self.metrics_file_path
        new_keys = {k for row in self.metrics for k in row} - set(self.metrics_keys)
        rows = self.metrics
        if new_keys:
            self.metrics_keys = sorted(set(self.metrics_keys) | new_keys)
            if os.path.exists(path):
                with open(path, newline="") as f:
                    rows = list(csv.DictReader(f)) + rows
                os.remove(path)
        write_header = not os.path.exists(path)
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.metrics_keys)
            if write_header:
                writer.writeheader()
            writer.writerows(rows)
        self.metrics = []


class CSVLogger(VersionedFolder, Logger):
    """Append logged metrics to ``metrics.csv`` (one row per call, sorted columns, ``step`` included) and save
    hyperparameters to ``hparams.yaml``, in ``save_dir/name/version_N``. Rows are written every
    ``flush_logs_every_n_steps`` steps and at the end. ``experiment`` is the ``ExperimentWriter`` that writes them."""

    NAME_METRICS_FILE = ExperimentWriter.NAME_METRICS_FILE
    NAME_HPARAMS_FILE = ExperimentWriter.NAME_HPARAMS_FILE

    def __init__(self, save_dir: Union[str, os.PathLike[str]], name: Optional[str] = "lightning_logs",
                 version: Optional[Union[int, str]] = None, prefix: str = "",
                 flush_logs_every_n_steps: int = 100) -> None:
        super().__init__()
        self._save_dir = os.fspath(save_dir)
        self._name = name or ""
        self._version = version
        self._prefix = prefix
        self._flush_every = flush_logs_every_n_steps
        self._experiment: Optional[ExperimentWriter] = None

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        """The ``ExperimentWriter`` of ``log_dir`` (on rank zero; elsewhere an object that records nothing)."""
        if self._experiment is None:
            self._experiment = ExperimentWriter(self.log_dir)
        return self._experiment

    @property
    def metrics_file_path(self) -> str:
        """Where the metrics are written: ``log_dir/metrics.csv``."""
        return os.path.join(self.log_dir, self.NAME_METRICS_FILE)

    @rank_zero_only
    @override
    def log_hyperparams(self, params: Optional[Union[dict[str, Any], Namespace]] = None, *args: Any,
                        **kwargs: Any) -> None:
        self.experiment.log_hparams(params_as_dict(params))

    @rank_zero_only
    @override
    def log_metrics(self, metrics: dict[str, float], step: Optional[int] = None) -> None:
        self.experiment.log_metrics({f"{self._prefix}-{k}" if self._prefix else k: v for k, v in metrics.items()},
                                    step)
        if step is not None and (step + 1) % self._flush_every == 0:
            self.save()

    @rank_zero_only
    @override
    def save(self) -> None:
        self.experiment.save()

    @override
    def finalize(self, status: str) -> None:
        self.save()

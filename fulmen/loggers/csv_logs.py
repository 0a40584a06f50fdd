"""CSVLogger: metrics to ``metrics.csv`` and hyperparameters to ``hparams.yaml``, in ``save_dir/name/version_N``."""

from __future__ import annotations

import csv
import os
from argparse import Namespace
from typing import Any, Optional, Union

from fulmen.checkpoint.io import makedirs
from fulmen.core.saving import to_yaml
from fulmen.loggers.logger import LOG_DIR_FIX, Logger, VersionedFolder, params_as_dict
from fulmen.utilities.rank_zero import rank_zero_only


class CSVLogger(VersionedFolder, Logger):
    """Append logged metrics to ``metrics.csv`` (one row per call, sorted columns, ``step`` included) and save
    hyperparameters to ``hparams.yaml``. Rows are written every ``flush_logs_every_n_steps`` steps and at the end."""

    NAME_METRICS_FILE = "metrics.csv"
    NAME_HPARAMS_FILE = "hparams.yaml"

    def __init__(self, save_dir: Union[str, os.PathLike[str]], name: Optional[str] = "lightning_logs",
                 version: Optional[Union[int, str]] = None, prefix: str = "",
                 flush_logs_every_n_steps: int = 100) -> None:
        super().__init__()
        self._save_dir = os.fspath(save_dir)
        self._name = name or ""
        self._version = version
        self._prefix = prefix
        self._flush_every = flush_logs_every_n_steps
        self._rows: list[dict[str, Any]] = []
        self._keys: list[str] = []
        self._hparams: dict[str, Any] = {}

    @property
    def experiment(self) -> "CSVLogger":
        """The object that writes the files: the logger itself (``logger.experiment.metrics_file_path`` and
        ``logger.experiment.log_metrics(...)`` work as in Lightning)."""
        return self

    @property
    def metrics_file_path(self) -> str:
        """Where the metrics are written: ``log_dir/metrics.csv``."""
        return os.path.join(self.log_dir, self.NAME_METRICS_FILE)

    @rank_zero_only
    def log_hyperparams(self, params: Optional[Union[dict[str, Any], Namespace]] = None, *args: Any,
                        **kwargs: Any) -> None:
        self._hparams.update(params_as_dict(params))

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: Optional[int] = None) -> None:
        row = {f"{self._prefix}-{k}" if self._prefix else k: v for k, v in metrics.items()}
        row["step"] = step
        self._rows.append(row)
        if step is not None and (step + 1) % self._flush_every == 0:
            self.save()

    @rank_zero_only
    def save(self) -> None:
        makedirs(self.log_dir, LOG_DIR_FIX)
        if self._hparams:
            with open(os.path.join(self.log_dir, self.NAME_HPARAMS_FILE), "w") as f:
                f.write(to_yaml(self._hparams))
        if not self._rows:
            return
        path = self.metrics_file_path
        new_keys = {k for row in self._rows for k in row} - set(self._keys)
        rows = self._rows
        if new_keys:
            self._keys = sorted(set(self._keys) | new_keys)
            if os.path.exists(path):  # the header grows: rewrite the file with the wider header
                with open(path, newline="") as f:
                    rows = list(csv.DictReader(f)) + rows
                os.remove(path)
        write_header = not os.path.exists(path)
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self._keys)
            if write_header:
                writer.writeheader()
            writer.writerows(rows)
        self._rows = []

    def finalize(self, status: str) -> None:
        self.save()

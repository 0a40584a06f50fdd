"""TensorBoardLogger: scalars, hyperparameters (with metrics, for TensorBoard's HPARAMS tab) and the model graph,
as TensorBoard event files in ``save_dir/name/version_N``, through ``torch.utils.tensorboard``.

The ``tensorboard`` package is an extra (``pip install 'fulmen[tensorboard]'``) and is imported when the first
value is written, not when the logger is made.
"""

from __future__ import annotations

import importlib.util
import os
from argparse import Namespace
from typing import Any, Optional, Union

from torch import Tensor
from typing_extensions import override

from fulmen.core.saving import to_yaml
from fulmen.checkpoint.io import makedirs
from fulmen.loggers.logger import (LOG_DIR_FIX, Logger, VersionedFolder, flatten_params, params_as_dict,
                                   rank_zero_experiment)
from fulmen.utilities.rank_zero import rank_zero_only, rank_zero_warn


def tensorboard_available() -> bool:
    try:
        return importlib.util.find_spec("tensorboard") is not None
    except (ImportError, ValueError):  # a broken or blocked installation counts as absent
        return False


class TensorBoardLogger(VersionedFolder, Logger):
    """Log to TensorBoard, as Lightning's TensorBoardLogger does (the default logger when tensorboard is installed).

    Args:
        save_dir: the folder that holds ``name/version_N``.
        name: the experiment folder; "" puts the versions straight into ``save_dir``.
        version: an int (``version_<int>``), a folder name, or None for the next free ``version_N``.
        log_graph: add the model graph, traced from ``example_input_array``.
        default_hp_metric: with hyperparameters but no metrics, log ``hp_metric = -1`` so that TensorBoard shows the
            hyperparameters (log the real ``hp_metric`` yourself to fill it in).
        prefix: put before every metric name, joined by "-".
        sub_dir: a folder inside the version folder for the event files.
        **kwargs: passed to ``torch.utils.tensorboard.SummaryWriter`` (``flush_secs``, ``max_queue``, ...).
    """

    NAME_HPARAMS_FILE = "hparams.yaml"
    LOGGER_JOIN_CHAR = "-"

    def __init__(self, save_dir: Union[str, os.PathLike[str]], name: Optional[str] = "lightning_logs",
                 version: Optional[Union[int, str]] = None, log_graph: bool = False, default_hp_metric: bool = True,
                 prefix: str = "", sub_dir: Optional[Union[str, os.PathLike[str]]] = None, **kwargs: Any) -> None:
        super().__init__()
        if not tensorboard_available():
            raise ModuleNotFoundError("TensorBoardLogger needs the tensorboard package: pip install "
                                      "'fulmen[tensorboard]' (or use CSVLogger)")
        self._save_dir = os.fspath(save_dir)
        self._name = name or ""
        self._version = version
        self._log_graph = log_graph
        self._default_hp_metric = default_hp_metric
        self._prefix = prefix
        self._sub_dir = os.fspath(sub_dir) if sub_dir is not None else None
        self._kwargs = kwargs
        self._experiment: Any = None
        self.hparams: dict[str, Any] = {}

    @property
    def sub_dir(self) -> Optional[str]:
        return self._sub_dir

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The ``torch.utils.tensorboard.SummaryWriter``, made on first use on rank zero; on the other processes an
        object whose every method does nothing (as in Lightning, so ``experiment.add_image(...)`` runs anywhere)."""
        if self._experiment is None:
            from torch.utils.tensorboard import SummaryWriter

            makedirs(self.log_dir, LOG_DIR_FIX)
            self._experiment = SummaryWriter(log_dir=self.log_dir, **self._kwargs)
        return self._experiment

    @rank_zero_only
    @override
    def log_metrics(self, metrics: dict[str, Any], step: Optional[int] = None) -> None:
        for key, value in metrics.items():
            name = f"{self._prefix}{self.LOGGER_JOIN_CHAR}{key}" if self._prefix else key
            if isinstance(value, Tensor):
                value = value.item()
            if isinstance(value, dict):
                self.experiment.add_scalars(name, value, step)
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"TensorBoardLogger.log_metrics got {name!r} = {value!r} ({type(value).__name__}); "
                                 "log a number, a scalar tensor or a dict of numbers")
            self.experiment.add_scalar(name, value, step)

    @rank_zero_only
    @override
    def log_hyperparams(self, params: Optional[Union[dict[str, Any], Namespace]] = None,
                        metrics: Optional[Union[dict[str, Any], float]] = None, step: Optional[int] = None) -> None:
        """Record hyperparameters (flattened with "/" and made plain), with ``metrics`` for the HPARAMS tab."""
        params = params_as_dict(params)
        self.hparams.update(params)
        flat = {k: _plain(v) for k, v in flatten_params(params).items()}
        if metrics is None:
            metrics = {"hp_metric": -1} if self._default_hp_metric else None
        elif not isinstance(metrics, dict):
            metrics = {"hp_metric": metrics}
        if not metrics:
            return
        self.log_metrics(metrics, step)
        from torch.utils.tensorboard.summary import hparams

        writer = self.experiment._get_file_writer()
        for summary in hparams(flat, metrics):
            writer.add_summary(summary, step)

    @rank_zero_only
    @override
    def log_graph(self, model: Any, input_array: Any = None) -> None:
        if not self._log_graph:
            return
        if input_array is None:
            input_array = getattr(model, "example_input_array", None)
        if input_array is None:
            rank_zero_warn("TensorBoardLogger(log_graph=True) has no input to trace the graph with: set "
                           "model.example_input_array or call log_graph(model, input_array)")
            return
        if not isinstance(input_array, (Tensor, tuple)):
            rank_zero_warn(f"TensorBoardLogger.log_graph cannot trace an input of type {type(input_array).__name__}; "
                           "make example_input_array a Tensor or a tuple of forward()'s positional arguments")
            return
        from fulmen.utilities.apply_to_collection import move_data_to_device

        device = getattr(model, "device", None)
        if device is not None:
            input_array = move_data_to_device(input_array, device)
        self.experiment.add_graph(model, input_array)

    @rank_zero_only
    @override
    def save(self) -> None:
        """Flush the event file (creating it, as Lightning does, even when nothing was logged yet); write
        hparams.yaml next to it the first time."""
        self.experiment.flush()
        hparams_file = os.path.join(self.log_dir, self.NAME_HPARAMS_FILE)
        if os.path.isdir(self.log_dir) and not os.path.isfile(hparams_file):
            with open(hparams_file, "w") as f:
                f.write(to_yaml(self.hparams))

    @rank_zero_only
    @override
    def finalize(self, status: str) -> None:
        if self._experiment is not None:
            self._experiment.flush()
            self._experiment.close()
        if status == "success":
            self.save()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_experiment"] = None  # a SummaryWriter holds a thread and an open file
        return state


def _plain(value: Any) -> Any:
    """A hyperparameter value TensorBoard can show: numbers, strings and booleans as they are (numpy scalars and
    one-element tensors unwrapped), anything else as its str."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(value)

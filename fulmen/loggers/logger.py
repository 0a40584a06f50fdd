"""The Logger base class: what the Trainer calls to record metrics and hyperparameters."""

from __future__ import annotations

import functools
import os
import statistics
from abc import ABC, abstractmethod
from argparse import Namespace
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Optional, Union
from typing_extensions import override

from fulmen.checkpoint.io import cannot_create, makedirs
from fulmen.utilities.rank_zero import rank_zero_only

# What a log folder that cannot be created asks for.
LOG_DIR_FIX = ("pass the logger a save_dir you can write to (the default logger writes under "
               "Trainer(default_root_dir=...))")


class Logger(ABC):
    """Subclass to send metrics somewhere. The Trainer calls ``log_metrics(metrics, step)`` with Python numbers
    every ``log_every_n_steps`` training steps and at the end of each epoch, then ``save()``; ``finalize(status)``
    when the run ends."""

    @property
    @abstractmethod
    def name(self) -> Optional[str]:
        """The experiment name."""

    @property
    @abstractmethod
    def version(self) -> Optional[Union[int, str]]:
        """The experiment version."""

    @property
    def root_dir(self) -> Optional[str]:
        return None

    @property
    def log_dir(self) -> Optional[str]:
        return None

    @property
    def save_dir(self) -> Optional[str]:
        return None

    @property
    def group_separator(self) -> str:
        return "/"

    @abstractmethod
    def log_metrics(self, metrics: dict[str, float], step: Optional[int] = None) -> None:
        """Record ``metrics`` (name -> number) at ``step``."""

    @abstractmethod
    def log_hyperparams(self, params: Union[dict[str, Any], Namespace], *args: Any, **kwargs: Any) -> None:
        """Record the run's hyperparameters."""

    def log_graph(self, model: Any, input_array: Any = None) -> None:
        """Record the model graph (optional)."""

    def save(self) -> None:
        """Flush what was logged (optional)."""

    def finalize(self, status: str) -> None:
        """The run ended with ``status`` ('success' or 'failed')."""
        self.save()

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """A checkpoint was saved (optional)."""


class _DummyExperiment:
    """What ``logger.experiment`` is where nothing is recorded: every method call, index and item assignment is
    accepted and does nothing (``logger.experiment.add_image(...)`` runs as is)."""

    def nop(self, *args: Any, **kwargs: Any) -> None:
        return None

    def __getattr__(self, name: str) -> Callable[..., None]:
        if name.startswith("__"):  # copy, pickle and friends look these up; they must not find a no-op
            raise AttributeError(name)
        return self.nop

    def __getitem__(self, idx: Any) -> "_DummyExperiment":
        return self

    def __setitem__(self, key: Any, value: Any) -> None:
        return None


def rank_zero_experiment(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Decorate a logger's ``experiment`` property: on processes other than rank zero it returns an experiment
    that records nothing, so only rank zero creates (and writes to) the real one."""

    @functools.wraps(fn)
    def experiment(self: Any) -> Any:
        if rank_zero_only.rank > 0:  # type: ignore[attr-defined]
            return _DummyExperiment()
        return fn(self)

    return experiment


class DummyLogger(Logger):
    """A logger that records nothing, standing in for the user's under ``fast_dev_run``: user code that calls
    ``self.logger.experiment.<anything>`` or ``self.logger.<anything>`` still runs."""

    def __init__(self) -> None:
        super().__init__()
        self._experiment = _DummyExperiment()

    @property
    def experiment(self) -> _DummyExperiment:
        return self._experiment

    @override
    def log_metrics(self, *args: Any, **kwargs: Any) -> None:
        return None

    @override
    def log_hyperparams(self, *args: Any, **kwargs: Any) -> None:
        return None

    @property
    @override
    def name(self) -> str:
        return ""

    @property
    @override
    def version(self) -> str:
        return ""

    def __getitem__(self, idx: int) -> "DummyLogger":
        return self

    def __getattr__(self, name: str) -> Callable[..., None]:
        if name.startswith("__"):
            raise AttributeError(name)

        def method(*args: Any, **kwargs: Any) -> None:
            return None

        return method


def merge_dicts(dicts: Sequence[Mapping[Any, Any]], agg_key_funcs: Optional[Mapping[Any, Any]] = None,
                default_func: Callable[[Sequence[float]], float] = statistics.mean) -> dict[Any, Any]:
    """One dict from several: each key's values (None ones left out) aggregated by ``agg_key_funcs[key]`` or
    ``default_func``; nested dicts are merged the same way, with the nested part of ``agg_key_funcs``."""
    agg_key_funcs = agg_key_funcs or {}
    keys: dict[Any, None] = {}
    for d in dicts:
        keys.update(dict.fromkeys(d))
    merged: dict[Any, Any] = {}
    for key in keys:
        values = [d[key] for d in dicts if d.get(key) is not None]
        fn = agg_key_funcs.get(key)
        if isinstance(values[0], dict):
            merged[key] = merge_dicts(values, fn, default_func)
        else:
            merged[key] = (fn or default_func)(values)
    return merged


class VersionedFolder:
    """``name``, ``version``, ``save_dir``, ``root_dir`` and ``log_dir`` of a logger that writes to
    ``save_dir/name/version_N`` (or ``save_dir/name/<version string>``), with an optional ``sub_dir`` inside.
    The version folder is claimed on first use (``claim_version``)."""

    _save_dir: str
    _name: str
    _version: Optional[Union[int, str]]
    _sub_dir: Optional[str] = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> Union[int, str]:
        if self._version is None:
            self._version = claim_version(self.root_dir)
        return self._version

    @property
    def save_dir(self) -> str:
        return self._save_dir

    @property
    def root_dir(self) -> str:
        return os.path.join(self._save_dir, self._name)

    @property
    def log_dir(self) -> str:
        version = self.version if isinstance(self.version, str) else f"version_{self.version}"
        folder = os.path.join(self.root_dir, version)
        if self._sub_dir is not None:
            folder = os.path.join(folder, self._sub_dir)
        return os.path.expanduser(os.path.expandvars(folder))


def claim_version(root_dir: str) -> int:
    """The next ``version_N`` folder under ``root_dir``, created here.

    The folder is claimed with ``os.mkdir``, which fails when it exists: two runs starting at the same moment in the
    same folder get different versions, where listing the folder and taking the next number would give both the
    same one. Processes other than rank zero only compute the number (they write no logs).
    """
    number = 0
    if os.path.isdir(root_dir):
        taken = [int(n[len("version_"):]) for n in os.listdir(root_dir)
                 if n.startswith("version_") and n[len("version_"):].isdigit()
                 and os.path.isdir(os.path.join(root_dir, n))]
        number = max(taken) + 1 if taken else 0
    if rank_zero_only.rank != 0:  # type: ignore[attr-defined]
        return number
    makedirs(root_dir, LOG_DIR_FIX)
    while True:
        folder = os.path.join(root_dir, f"version_{number}")
        try:
            os.mkdir(folder)
            return number
        except FileExistsError:
            number += 1
        except OSError as err:
            raise cannot_create(err, folder, LOG_DIR_FIX) from err


def flatten_params(params: dict[str, Any], prefix: str = "", sep: str = "/") -> dict[str, Any]:
    """Nested dicts (and Namespaces) of hyperparameters as one level: ``{"opt": {"lr": 1}}`` -> ``{"opt/lr": 1}``."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, Namespace):
            value = vars(value)
        if isinstance(value, dict) and value:
            out.update(flatten_params(value, name, sep))
        else:
            out[name] = value
    return out


def params_as_dict(params: Optional[Union[dict[str, Any], Namespace]]) -> dict[str, Any]:
    if params is None:
        return {}
    return dict(vars(params)) if isinstance(params, Namespace) else dict(params)


class UploadsCheckpoints:
    """``log_model`` for loggers that upload checkpoints: "all" uploads each file as it is saved; True uploads at
    the end of the run (each one as it is saved when ``save_top_k=-1``, since then none is ever deleted)."""

    _log_model: Union[bool, str] = False
    _checkpoint_callback: Any = None

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        if self._log_model == "all" or (self._log_model is True and checkpoint_callback.save_top_k == -1):
            self._log_checkpoints(checkpoint_callback)
        elif self._log_model is True:
            self._checkpoint_callback = checkpoint_callback

    def _log_checkpoints(self, checkpoint_callback: Any) -> None:
        raise NotImplementedError


def new_checkpoints(checkpoint_callback: Any, logged: dict[str, float]) -> list[dict[str, Any]]:
    """The files of ``checkpoint_callback`` (top-k, best, last) written since they were last logged as artifacts
    (``logged``: path -> modification time, updated here), oldest first, each with its score and aliases
    ("latest", "best"), for loggers that upload checkpoints (``log_model``)."""
    paths: dict[str, Any] = {}
    for path, score in getattr(checkpoint_callback, "best_k_models", {}).items():
        paths[path] = score
    for path in (checkpoint_callback.last_model_path, checkpoint_callback.best_model_path):
        if path:
            paths.setdefault(path, None)
    found = []
    for path, score in paths.items():
        if not os.path.isfile(path):
            continue
        stamp = os.path.getmtime(path)
        if logged.get(path) == stamp:
            continue
        logged[path] = stamp
        value = float(score) if score is not None else None
        found.append({"path": path, "score": value, "time": stamp})
    found.sort(key=lambda item: item["time"])
    for item in found:
        aliases = ["latest"] if item is found[-1] else []
        if item["path"] == checkpoint_callback.best_model_path:
            aliases.append("best")
        item["aliases"] = aliases
    return found

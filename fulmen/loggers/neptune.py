"""NeptuneLogger: metrics, hyperparameters, the model summary and checkpoints to a Neptune run (``neptune``
client 1.x: a Neptune server, or the ``offline`` and ``debug`` modes).

``neptune`` is an extra (``pip install 'fulmen[neptune]'``), imported when the run is first used. Lightning 2.6's
NeptuneLogger only raises (Neptune's hosted service has closed); this one keeps Lightning 2.5's behaviour for
projects that log to their own Neptune server or offline.
"""

from __future__ import annotations

import os
from argparse import Namespace
from typing import Any, Optional, Union

from torch import Tensor, nn
from typing_extensions import override

from fulmen.__about__ import __version__
from fulmen.loggers.logger import Logger, params_as_dict, rank_zero_experiment
from fulmen.utilities.imports import module_available
from fulmen.utilities.rank_zero import rank_zero_only

# Where the run records that it was written through this integration.
_INTEGRATION_VERSION_KEY = "source_code/integrations/pytorch-lightning"


class NeptuneLogger(Logger):
    """Log to a Neptune run, as Lightning's NeptuneLogger did up to 2.5.

    Args:
        api_key: the Neptune API token (default ``$NEPTUNE_API_TOKEN``).
        project: "workspace/project" (default ``$NEPTUNE_PROJECT``).
        name: the run's name.
        run: an existing ``neptune`` run (or a handler inside one) to log to, instead of making one.
        log_model_checkpoints: upload the checkpoints ModelCheckpoint saves, under ``<prefix>/model/checkpoints``.
        prefix: the namespace everything is logged under ("training": ``run["training/train_loss"]``).
        **neptune_run_kwargs: passed to ``neptune.init_run`` (``mode="offline"`` or ``"debug"``, ``tags``, ...).
    """

    LOGGER_JOIN_CHAR = "/"
    PARAMETERS_KEY = "hyperparams"
    ARTIFACTS_KEY = "artifacts"

    def __init__(self, *, api_key: Optional[str] = None, project: Optional[str] = None, name: Optional[str] = None,
                 run: Any = None, log_model_checkpoints: Optional[bool] = True, prefix: str = "training",
                 **neptune_run_kwargs: Any) -> None:
        if not module_available("neptune"):
            raise ModuleNotFoundError("NeptuneLogger needs the neptune package: pip install 'fulmen[neptune]'")
        if run is not None and (api_key is not None or project is not None or name is not None
                                or neptune_run_kwargs):
            raise ValueError("NeptuneLogger(run=...) logs to that run: leave api_key, project, name and the "
                             "neptune.init_run arguments out (they configure a new run)")
        super().__init__()
        self._api_key = api_key
        self._project = project
        self._name = name
        self._run_instance = run
        self._log_model_checkpoints = log_model_checkpoints
        self._prefix = prefix
        self._kwargs = neptune_run_kwargs
        self._uploaded: set[str] = set()  # the checkpoint names uploaded so far

    def _path(self, key: str) -> str:
        return f"{self._prefix}{self.LOGGER_JOIN_CHAR}{key}" if self._prefix else key

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The Neptune run (made on first use, on global rank zero only): ``logger.experiment["x"].append(1)``."""
        return self.run

    @property
    @rank_zero_experiment
    def run(self) -> Any:
        """The Neptune run, as ``experiment``."""
        if self._run_instance is None:
            import neptune

            self._run_instance = neptune.init_run(project=self._project, api_token=self._api_key, name=self._name,
                                                  **self._kwargs)
            self._run_instance[_INTEGRATION_VERSION_KEY] = __version__
        return self._run_instance

    @rank_zero_only
    @override
    def log_hyperparams(self, params: Union[dict[str, Any], Namespace], *args: Any, **kwargs: Any) -> None:
        """Record the hyperparameters under ``<prefix>/hyperparams`` (values Neptune cannot store as strings)."""
        from neptune.utils import stringify_unsupported

        self.run[self._path(self.PARAMETERS_KEY)] = stringify_unsupported(params_as_dict(params))

    @rank_zero_only
    @override
    def log_metrics(self, metrics: dict[str, Union[Tensor, float]], step: Optional[int] = None) -> None:
        """Append each value to the series ``<prefix>/<name>`` at ``step``."""
        for key, value in metrics.items():
            if isinstance(value, Tensor):
                value = value.item()
            self.run[self._path(key)].append(value, step=step)

    @rank_zero_only
    @override
    def log_graph(self, model: nn.Module, input_array: Optional[Tensor] = None) -> None:
        """Neptune shows no graphs: nothing to record."""

    @rank_zero_only
    def log_model_summary(self, model: nn.Module, max_depth: int = -1) -> None:
        """Upload the model summary table as ``<prefix>/model/summary`` (a text file)."""
        from neptune.types import File

        from fulmen.utilities.model_summary import ModelSummary

        text = str(ModelSummary(model, max_depth=max_depth))
        self.run[self._path("model/summary")] = File.from_content(content=text, extension="txt")

    @rank_zero_only
    @override
    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """Upload the checkpoints the callback keeps (last, top-k, best) under ``<prefix>/model/checkpoints/<name>``,
        delete the ones it has removed, and record the best path and score."""
        if not self._log_model_checkpoints:
            return
        folder = checkpoint_callback.dirpath
        namespace = self._path("model/checkpoints")
        kept: set[str] = set()
        paths = [checkpoint_callback.last_model_path, *getattr(checkpoint_callback, "best_k_models", {}),
                 checkpoint_callback.best_model_path]
        for path in paths:
            if not path or not os.path.isfile(path):
                continue
            name = _checkpoint_name(path, folder)
            if name in kept:
                continue
            kept.add(name)
            self.run[f"{namespace}/{name}"].upload(path)
        if checkpoint_callback.best_model_path:
            self.run[self._path("model/best_model_path")] = checkpoint_callback.best_model_path
        score = checkpoint_callback.best_model_score
        if score is not None:
            self.run[self._path("model/best_model_score")] = float(score)
        for old in self._uploaded - kept:  # removed by the callback since the last upload
            del self.run[f"{namespace}/{old}"]
        self._uploaded = kept

    @rank_zero_only
    @override
    def finalize(self, status: str) -> None:
        """Record the run's end status under ``<prefix>/status``; the run itself stays open."""
        if self._run_instance is None:
            return
        if status:
            self.run[self._path("status")] = status
        super().finalize(status)

    @property
    @override
    def save_dir(self) -> Optional[str]:
        """Where the neptune client keeps its files: ``.neptune`` in the working folder."""
        return os.path.join(os.getcwd(), ".neptune")

    @property
    @override
    def name(self) -> Optional[str]:
        """The run's name."""
        return self._name

    @property
    @override
    def version(self) -> Optional[str]:
        """The run's short id ("PROJ-123"; "OFFLINE-<n>" offline and in debug mode), which names the checkpoint
        folder. Asking for it makes the run (on global rank zero; None elsewhere)."""
        if rank_zero_only.rank != 0:  # type: ignore[attr-defined]
            return None
        run = self.run
        root = run.get_root_object() if hasattr(run, "get_root_object") else run  # a handler inside a run
        return getattr(root, "_sys_id", None)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_run_instance"] = None  # a run holds threads and files; a copy makes a new one when used
        return state


def _checkpoint_name(path: str, folder: Optional[str]) -> str:
    """A checkpoint's name inside the callback's folder, without the extension (Neptune paths have no dots)."""
    relative = os.path.relpath(path, folder) if folder else os.path.basename(path)
    return os.path.splitext(relative)[0].replace(os.sep, "/")

"""MLFlowLogger: metrics, parameters and (with ``log_model``) checkpoints to an MLflow tracking server or store.

``mlflow`` is an extra (``pip install 'fulmen[mlflow]'``), imported when the run is first used.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import time
from argparse import Namespace
from typing import Any, Optional, Union

from torch import Tensor
from typing_extensions import override

from fulmen.loggers.logger import Logger, UploadsCheckpoints, flatten_params, new_checkpoints, params_as_dict
from fulmen.utilities.rank_zero import rank_zero_only, rank_zero_warn

log = logging.getLogger("fulmen")
LOCAL_FILE_URI_PREFIX = "file:"
_STATUS = {"success": "FINISHED", "finished": "FINISHED", "failed": "FAILED"}


class MLFlowLogger(UploadsCheckpoints, Logger):
    """Log to MLflow, as Lightning's MLFlowLogger does.

    Args:
        experiment_name: the MLflow experiment (created if missing).
        run_name: the run's name (the ``mlflow.runName`` tag).
        tracking_uri: a server (``http://host:port``), a database (``sqlite:///mlflow.db``) or a folder
            (``file:./mlruns``); default ``$MLFLOW_TRACKING_URI``, else ``file:<save_dir>``.
        tags: tags for the new run.
        save_dir: the folder of the default file store.
        log_model: upload checkpoints as artifacts: True at the end of the run (every one when ``save_top_k=-1``),
            "all" as each is saved, False never.
        prefix: put before every metric name, joined by "-".
        artifact_location: where a new experiment stores artifacts.
        run_id: continue this existing run instead of starting one.
        checkpoint_path_prefix: a folder prefix for the uploaded checkpoints.
        synchronous: passed to ``log_batch`` (MLflow >= 2.8): False logs in the background.
    """

    LOGGER_JOIN_CHAR = "-"

    def __init__(self, experiment_name: str = "lightning_logs", run_name: Optional[str] = None,
                 tracking_uri: Optional[str] = None, tags: Optional[dict[str, Any]] = None,
                 save_dir: Optional[str] = "./mlruns", log_model: Union[bool, str] = False, prefix: str = "",
                 artifact_location: Optional[str] = None, run_id: Optional[str] = None,
                 synchronous: Optional[bool] = None, checkpoint_path_prefix: str = "") -> None:
        super().__init__()
        if importlib.util.find_spec("mlflow") is None:
            raise ModuleNotFoundError("MLFlowLogger needs the mlflow package: pip install 'fulmen[mlflow]'")
        if log_model not in (True, False, "all"):
            raise ValueError(f"MLFlowLogger(log_model={log_model!r}) must be True, False or 'all'")
        tracking_uri = tracking_uri or os.getenv("MLFLOW_TRACKING_URI")
        if tracking_uri is None and save_dir is not None:
            tracking_uri = f"{LOCAL_FILE_URI_PREFIX}{save_dir}"
        self._experiment_name = experiment_name
        self._run_name = run_name
        self._tracking_uri = tracking_uri
        self.tags = dict(tags) if tags else {}
        self._log_model = log_model
        self._prefix = prefix
        self._artifact_location = artifact_location
        self._run_id = run_id
        self._experiment_id: Optional[str] = None
        self._client: Any = None
        self._batch_kwargs = {} if synchronous is None else {"synchronous": synchronous}
        self._checkpoint_path_prefix = checkpoint_path_prefix
        self._logged_checkpoints: dict[str, float] = {}

    @property
    def experiment(self) -> Any:
        """The ``mlflow.tracking.MlflowClient``; the experiment and the run are created on first use."""
        if self._client is not None:
            return self._client
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=self._tracking_uri)
        if self._run_id is not None:
            self._experiment_id = client.get_run(self._run_id).info.experiment_id
        else:
            found = client.get_experiment_by_name(self._experiment_name)
            if found is not None and found.lifecycle_stage != "deleted":
                self._experiment_id = found.experiment_id
            else:
                self._experiment_id = client.create_experiment(self._experiment_name,
                                                               artifact_location=self._artifact_location)
            tags = {str(k): str(v) for k, v in self.tags.items()}
            if self._run_name is not None:
                tags["mlflow.runName"] = self._run_name
            # mlflow's own context tags, as Lightning adds them: mlflow.source.name/type, mlflow.user, the git
            # commit; the UI shows them as the run's source and creator.
            tags = _context_tags(tags)
            self._run_id = client.create_run(experiment_id=self._experiment_id, tags=tags).info.run_id
        self._client = client
        return client

    @property
    def run_id(self) -> Optional[str]:
        self.experiment  # noqa: B018 (creates the run)
        return self._run_id

    @property
    def experiment_id(self) -> Optional[str]:
        self.experiment  # noqa: B018
        return self._experiment_id

    @property
    @override
    def name(self) -> Optional[str]:
        """The experiment id (as in Lightning)."""
        return self.experiment_id

    @property
    @override
    def version(self) -> Optional[str]:
        """The run id."""
        return self.run_id

    @property
    @override
    def save_dir(self) -> Optional[str]:
        """The store's folder for a ``file:`` tracking URI, else None."""
        if self._tracking_uri and self._tracking_uri.startswith(LOCAL_FILE_URI_PREFIX):
            return self._tracking_uri[len(LOCAL_FILE_URI_PREFIX):]
        return None

    @rank_zero_only
    @override
    def log_hyperparams(self, params: Optional[Union[dict[str, Any], Namespace]] = None, *args: Any,
                        **kwargs: Any) -> None:
        from mlflow.entities import Param

        flat = flatten_params(params_as_dict(params))
        # MLflow stores parameter values as strings of at most 250 characters (6000 on recent servers).
        items = [Param(key=k, value=str(v)[:250]) for k, v in flat.items()]
        for start in range(0, len(items), 100):
            self.experiment.log_batch(run_id=self.run_id, params=items[start:start + 100], **self._batch_kwargs)

    @rank_zero_only
    @override
    def log_metrics(self, metrics: dict[str, Any], step: Optional[int] = None) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        items = []
        for key, value in metrics.items():
            name = f"{self._prefix}{self.LOGGER_JOIN_CHAR}{key}" if self._prefix else key
            if isinstance(value, str):
                rank_zero_warn(f"MLFlowLogger: metric {name!r} has a string value ({value!r}); MLflow stores numbers "
                               "only, so it is left out")
                continue
            clean = re.sub(r"[^a-zA-Z0-9_/. -]+", "", name)
            if clean != name:
                rank_zero_warn(f"MLFlowLogger: metric name {name!r} has characters MLflow cannot store (it allows "
                               f"letters, digits, '_', '/', '.', ' ' and '-'); it is logged as {clean!r}",
                               RuntimeWarning)
                name = clean
            value = value.item() if isinstance(value, Tensor) else value
            items.append(Metric(key=name, value=float(value), timestamp=stamp, step=step or 0))
        if items:
            self.experiment.log_batch(run_id=self.run_id, metrics=items, **self._batch_kwargs)

    @rank_zero_only
    @override
    def finalize(self, status: str = "success") -> None:
        if self._client is None:
            return  # nothing was logged: no run to close
        if self._checkpoint_callback is not None:
            self._log_checkpoints(self._checkpoint_callback)
        self.experiment.set_terminated(self.run_id, _STATUS.get(status, status.upper()))

    @override
    def _log_checkpoints(self, checkpoint_callback: Any) -> None:
        """Each new checkpoint file under ``<prefix>/<file stem>/`` (Lightning's layout), beside a ``metadata.yaml``
        (its score, file name and the ModelCheckpoint's settings) and an ``aliases.txt`` (``['latest']``, or
        ``['latest', 'best']`` for the best file)."""
        import tempfile

        import yaml

        for item in new_checkpoints(checkpoint_callback, self._logged_checkpoints):
            path = item["path"]
            stem = os.path.splitext(os.path.basename(path))[0]
            folder = "/".join(p for p in (self._checkpoint_path_prefix, stem) if p)
            self.experiment.log_artifact(self.run_id, path, folder)
            settings = {name: getattr(checkpoint_callback, name) for name in _CHECKPOINT_SETTINGS
                        if hasattr(checkpoint_callback, name)}
            metadata = {"score": item["score"], "original_filename": os.path.basename(path), "Checkpoint": settings}
            aliases = ["latest", "best"] if path == checkpoint_callback.best_model_path else ["latest"]
            with tempfile.TemporaryDirectory() as tmp:
                with open(os.path.join(tmp, "metadata.yaml"), "w") as f:
                    yaml.safe_dump(metadata, f, default_flow_style=False)
                with open(os.path.join(tmp, "aliases.txt"), "w") as f:
                    f.write(str(aliases))
                self.experiment.log_artifacts(self.run_id, tmp, folder)


# The ModelCheckpoint settings that metadata.yaml records, under Lightning's attribute names.
_CHECKPOINT_SETTINGS = ("monitor", "mode", "save_last", "save_top_k", "save_weights_only", "_every_n_train_steps",
                        "_every_n_val_epochs")


def _context_tags(tags: dict[str, str]) -> dict[str, str]:
    """``tags`` with mlflow's context tags added (the user's win), through mlflow's tag registry."""
    try:
        from mlflow.tracking.context.registry import resolve_tags
    except ImportError:  # an mlflow without the registry: the user's tags only
        return tags
    return resolve_tags(tags)

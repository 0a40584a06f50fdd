"""WandbLogger: metrics, hyperparameters, gradients (``watch``), media and (with ``log_model``) checkpoints to
Weights & Biases, online or offline.

``wandb`` is an extra (``pip install 'fulmen[wandb]'``), imported when the run is first used.
"""

from __future__ import annotations

import importlib.util
import os
from argparse import Namespace
from typing import Any, Optional, Union

from torch import Tensor
from typing_extensions import override

from fulmen.loggers.logger import Logger, UploadsCheckpoints, new_checkpoints, params_as_dict
from fulmen.utilities.rank_zero import rank_zero_only, rank_zero_warn


class WandbLogger(UploadsCheckpoints, Logger):
    """Log to Weights & Biases, as Lightning's WandbLogger does.

    Args:
        name: the run's display name.
        save_dir: where wandb keeps its files (``<save_dir>/wandb/...``).
        version: the run id, to resume a run (the same as ``id``).
        offline: write the run locally only (``wandb sync`` uploads it later).
        dir: the same as ``save_dir`` (wandb's own argument name).
        id: the same as ``version`` (wandb's own argument name).
        anonymous: log without an account.
        project: the project (default ``$WANDB_PROJECT``, else "lightning_logs").
        log_model: upload checkpoints as artifacts: True at the end of the run (every one when ``save_top_k=-1``),
            "all" as each is saved, False never.
        experiment: an existing ``wandb`` run to log to.
        prefix: put before every metric name, joined by "-".
        checkpoint_name: the name of the checkpoint artifact (default ``model-<run id>``).
        **kwargs: passed to ``wandb.init`` (``entity``, ``group``, ``tags``, ``config``, ``mode``, ...).

    Metrics are logged against ``trainer/global_step``, which the run's charts use as their x axis.
    """

    LOGGER_JOIN_CHAR = "-"

    def __init__(self, name: Optional[str] = None, save_dir: Union[str, os.PathLike[str]] = ".",
                 version: Optional[str] = None, offline: bool = False, dir: Optional[Union[str, os.PathLike[str]]] = None,
                 id: Optional[str] = None, anonymous: Optional[bool] = None, project: Optional[str] = None,
                 log_model: Union[bool, str] = False, experiment: Any = None, prefix: str = "",
                 checkpoint_name: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__()
        if importlib.util.find_spec("wandb") is None:
            raise ModuleNotFoundError("WandbLogger needs the wandb package: pip install 'fulmen[wandb]'")
        if offline and log_model:
            raise ValueError(f"WandbLogger(offline=True, log_model={log_model!r}): checkpoints cannot be uploaded "
                             "offline; pass log_model=False, or log online")
        if log_model not in (True, False, "all"):
            raise ValueError(f"WandbLogger(log_model={log_model!r}) must be True, False or 'all'")
        if os.fspath(save_dir) == "." and dir is not None:
            save_dir = dir
        self._save_dir = os.fspath(save_dir)
        self._project = project or os.environ.get("WANDB_PROJECT", "lightning_logs")
        self._id = version or id
        self._offline = offline
        self._log_model = log_model
        self._prefix = prefix
        self._checkpoint_name = checkpoint_name
        self._experiment = experiment
        self._logged_checkpoints: dict[str, float] = {}
        self._init_kwargs: dict[str, Any] = {
            "name": name, "project": self._project, "dir": self._save_dir, "id": self._id, "resume": "allow", **kwargs}
        if anonymous:  # passed only when asked for: wandb warns that the setting has no effect whenever it is given
            self._init_kwargs.setdefault("anonymous", "allow")
        if offline:
            self._init_kwargs.setdefault("mode", "offline")

    @property
    def experiment(self) -> Any:
        """The ``wandb`` run (started on first use, on rank zero only)."""
        if self._experiment is None:
            if rank_zero_only.rank != 0:  # type: ignore[attr-defined]
                raise RuntimeError("WandbLogger.experiment exists on global rank zero only; log from there")
            import wandb

            if wandb.run is not None:
                rank_zero_warn("WandbLogger: a wandb run is already active (wandb.init was called); logging to it. "
                               "Call wandb.finish() first for a new run")
                self._experiment = wandb.run
            else:
                os.makedirs(self._save_dir, exist_ok=True)
                self._experiment = wandb.init(**{k: v for k, v in self._init_kwargs.items() if v is not None})
            # Charts use the Trainer's step as their x axis, also for values logged at other moments.
            self._experiment.define_metric("trainer/global_step")
            self._experiment.define_metric("*", step_metric="trainer/global_step", step_sync=True)
        return self._experiment

    @property
    @override
    def name(self) -> str:
        """The project (as in Lightning)."""
        return self._project

    @property
    @override
    def version(self) -> Optional[str]:
        """The run id."""
        return self._experiment.id if self._experiment is not None else self._id

    @property
    @override
    def save_dir(self) -> str:
        return self._save_dir

    @rank_zero_only
    @override
    def log_hyperparams(self, params: Optional[Union[dict[str, Any], Namespace]] = None, *args: Any,
                        **kwargs: Any) -> None:
        values = {k: (v.__name__ if callable(v) and hasattr(v, "__name__") else v)
                  for k, v in params_as_dict(params).items()}
        self.experiment.config.update(values, allow_val_change=True)

    @rank_zero_only
    @override
    def log_metrics(self, metrics: dict[str, Any], step: Optional[int] = None) -> None:
        row = {(f"{self._prefix}{self.LOGGER_JOIN_CHAR}{k}" if self._prefix else k):
               (v.item() if isinstance(v, Tensor) else v) for k, v in metrics.items()}
        if step is not None:
            row["trainer/global_step"] = step
        self.experiment.log(row)

    @rank_zero_only
    def watch(self, model: Any, log: Optional[str] = "gradients", log_freq: int = 100, log_graph: bool = True) -> None:
        """Log gradient (and with ``log="all"``, parameter) histograms every ``log_freq`` steps."""
        self.experiment.watch(model, log=log, log_freq=log_freq, log_graph=log_graph)

    @rank_zero_only
    def log_table(self, key: str, columns: Optional[list[str]] = None, data: Optional[list[list[Any]]] = None,
                  dataframe: Any = None, step: Optional[int] = None) -> None:
        import wandb

        self.log_metrics({key: wandb.Table(columns=columns, data=data, dataframe=dataframe)}, step)

    @rank_zero_only
    def log_text(self, key: str, columns: Optional[list[str]] = None, data: Optional[list[list[str]]] = None,
                 dataframe: Any = None, step: Optional[int] = None) -> None:
        self.log_table(key, columns, data, dataframe, step)

    @rank_zero_only
    def log_image(self, key: str, images: list[Any], step: Optional[int] = None, **kwargs: Any) -> None:
        """Images (arrays, tensors, PIL images or paths); ``caption=[...]`` and other ``wandb.Image`` options are
        given one value per image."""
        self._log_media("Image", key, images, step, kwargs)

    @rank_zero_only
    def log_audio(self, key: str, audios: list[Any], step: Optional[int] = None, **kwargs: Any) -> None:
        self._log_media("Audio", key, audios, step, kwargs)

    @rank_zero_only
    def log_video(self, key: str, videos: list[Any], step: Optional[int] = None, **kwargs: Any) -> None:
        self._log_media("Video", key, videos, step, kwargs)

    def _log_media(self, kind: str, key: str, items: list[Any], step: Optional[int], options: dict[str, Any]) -> None:
        import wandb

        if not isinstance(items, list):
            raise TypeError(f"WandbLogger.log_{kind.lower()}({key!r}, ...) expects a list, got {type(items).__name__}")
        for option, values in options.items():
            if len(values) != len(items):
                raise ValueError(f"WandbLogger.log_{kind.lower()}: {option} has {len(values)} entries for "
                                 f"{len(items)} items")
        media = [getattr(wandb, kind)(item, **{k: v[i] for k, v in options.items()}) for i, item in enumerate(items)]
        self.log_metrics({key: media}, step)

    @rank_zero_only
    @override
    def finalize(self, status: str) -> None:
        # As in Lightning, the run stays open (wandb closes it at exit, or call wandb.finish()), so that a later
        # validate/test logs to the same run; checkpoints are uploaded only after a successful fit.
        if status == "success" and self._checkpoint_callback is not None and self._experiment is not None:
            self._log_checkpoints(self._checkpoint_callback)

    @override
    def _log_checkpoints(self, checkpoint_callback: Any) -> None:
        import wandb

        for item in new_checkpoints(checkpoint_callback, self._logged_checkpoints):
            metadata = {"score": item["score"], "original_filename": os.path.basename(item["path"]),
                        "monitor": checkpoint_callback.monitor, "save_top_k": checkpoint_callback.save_top_k}
            artifact = wandb.Artifact(name=self._checkpoint_name or f"model-{self.experiment.id}", type="model",
                                      metadata=metadata)
            artifact.add_file(item["path"], name="model.ckpt")
            self.experiment.log_artifact(artifact, aliases=item["aliases"])

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_experiment"] = None  # a live run cannot be pickled; the id is kept, so it can be resumed
        if self._experiment is not None:
            state["_id"] = self._experiment.id
        return state

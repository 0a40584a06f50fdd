"""CometLogger: metrics, hyperparameters and the model graph to Comet (comet.com), online or as an offline archive.

``comet_ml`` is an extra (``pip install 'fulmen[comet]'``), imported when the logger is made.
"""

from __future__ import annotations

import logging
import os
from argparse import Namespace
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, Optional, Union

from torch import Tensor, nn
from typing_extensions import override

from fulmen.loggers.logger import Logger, params_as_dict, rank_zero_experiment
from fulmen.utilities.imports import module_available
from fulmen.utilities.rank_zero import rank_zero_only

if TYPE_CHECKING:
    import comet_ml

log = logging.getLogger("fulmen")

# What the experiment records as its origin ("Created from"), and the framework its values are logged under.
FRAMEWORK_NAME = "fulmen"
# The Comet experiment classes ``CometLogger.experiment`` may be.
comet_experiment = Union["comet_ml.Experiment", "comet_ml.ExistingExperiment", "comet_ml.OfflineExperiment"]

# Arguments of Lightning's older CometLogger, and what they are now.
_RENAMED = {"experiment_name": "name", "project_name": "project", "save_dir": "offline_directory"}


class CometLogger(Logger):
    """Log to Comet, as Lightning's CometLogger does.

    Args:
        api_key: the Comet API key (default: the one ``comet login`` saved, or ``$COMET_API_KEY``).
        workspace: the workspace (default: yours).
        project: the project (default "Uncategorized").
        experiment_key: the key of the experiment to log to, or to create (32 to 50 letters and digits).
        mode: "get_or_create" (the default), "get" (an existing experiment) or "create" (always a new one).
        online: False keeps the experiment on this machine: Comet writes it as a zip archive into
            ``offline_directory`` when the experiment ends (``comet upload <zip>`` sends it later).
        prefix: put before every metric name.
        **kwargs: ``comet_ml.ExperimentConfig`` arguments (``name``, ``offline_directory``, ``log_code``, ...).

    The experiment is made on global rank zero only, when the logger is made; ``experiment`` is the
    ``comet_ml`` experiment object there (and an object that records nothing on the other processes). The run
    does not end the experiment (``logger.experiment.end()`` does), so it can be used after ``fit``.
    """

    def __init__(self, *, api_key: Optional[str] = None, workspace: Optional[str] = None,
                 project: Optional[str] = None, experiment_key: Optional[str] = None,
                 mode: Optional[Literal["get_or_create", "get", "create"]] = None, online: Optional[bool] = None,
                 prefix: Optional[str] = None, **kwargs: Any) -> None:
        if not module_available("comet_ml"):
            raise ModuleNotFoundError("CometLogger needs the comet_ml package: pip install 'fulmen[comet]'")
        super().__init__()
        for old, new in _RENAMED.items():
            if old in kwargs:
                log.warning(f"CometLogger({old}=...) is the old name of {new}=")
                value = kwargs.pop(old)
                if new == "project":
                    project = project if project is not None else value
                else:
                    kwargs.setdefault(new, value)
        if "offline" in kwargs:
            log.warning("CometLogger(offline=...) is the old form of online=...")
            offline = kwargs.pop("offline")
            online = online if online is not None else not offline
        if mode not in (None, "get_or_create", "get", "create"):
            raise ValueError(f"CometLogger(mode={mode!r}) must be 'get_or_create', 'get' or 'create'")
        self._api_key = api_key
        self._workspace = workspace
        self._project_name = project
        self._experiment_key = experiment_key
        self._mode = mode
        self._online = online
        self._prefix = prefix
        self._kwargs = kwargs
        self._experiment: Optional[Any] = None
        # comet_ml patches the ML libraries it finds imported when it is imported itself; the Trainer logs what it
        # should, so that is turned off.
        os.environ["COMET_DISABLE_AUTO_LOGGING"] = "1"
        import comet_ml

        self._comet_config = comet_ml.ExperimentConfig(**kwargs)
        if rank_zero_only.rank == 0:  # type: ignore[attr-defined]
            self._create_experiment()

    def _create_experiment(self) -> None:
        import comet_ml

        self._experiment = comet_ml.start(api_key=self._api_key, workspace=self._workspace,
                                          project=self._project_name, experiment_key=self._experiment_key,
                                          mode=self._mode, online=self._online, experiment_config=self._comet_config)
        if self._experiment is None:
            raise comet_ml.exceptions.ExperimentNotFound("Comet did not create the experiment")
        self._experiment_key = self._experiment.get_key()
        self._project_name = self._experiment.project_name
        self._experiment.log_other("Created from", FRAMEWORK_NAME)

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The ``comet_ml`` experiment (made again from its key after this logger was pickled, as for
        ``ddp_spawn``)."""
        if self._experiment is None:
            self._create_experiment()
        return self._experiment

    @rank_zero_only
    @override
    def log_hyperparams(self, params: Union[dict[str, Any], Namespace], *args: Any, **kwargs: Any) -> None:
        self.experiment.__internal_api__log_parameters__(parameters=params_as_dict(params), framework=FRAMEWORK_NAME,
                                                         flatten_nested=True, source="manual")

    @rank_zero_only
    @override
    def log_metrics(self, metrics: Mapping[str, Union[Tensor, float]], step: Optional[int] = None) -> None:
        values = {k: v.detach().cpu() if isinstance(v, Tensor) else v for k, v in metrics.items()}
        epoch = values.pop("epoch", None)  # Comet keeps the epoch beside the step, not as a metric
        self.experiment.__internal_api__log_metrics__(values, step=step, epoch=epoch, prefix=self._prefix,
                                                      framework=FRAMEWORK_NAME)

    @rank_zero_only
    @override
    def log_graph(self, model: nn.Module, input_array: Optional[Tensor] = None) -> None:
        if self._experiment is not None:
            self._experiment.__internal_api__set_model_graph__(graph=model, framework=FRAMEWORK_NAME)

    @rank_zero_only
    @override
    def finalize(self, status: str) -> None:
        """Send (or, offline, keep) what was logged; the experiment stays open for use after the run."""
        if self._experiment is not None:
            self._experiment.flush()

    @property
    @override
    def save_dir(self) -> Optional[str]:
        """Where an offline experiment's archive is written."""
        return self._comet_config.offline_directory

    @property
    @override
    def name(self) -> Optional[str]:
        """The project's name."""
        return self._project_name

    @property
    @override
    def version(self) -> Optional[str]:
        """The experiment's key."""
        return self._experiment.get_key() if self._experiment is not None else None

    def __getstate__(self) -> dict[str, Any]:
        # The experiment holds threads and connections; a copy makes it again from its key when it is used.
        state = self.__dict__.copy()
        if self._experiment is not None:
            state["_experiment_key"] = self._experiment.get_key()
        state["_experiment"] = None
        return state

"""The Trainer: checks its arguments once, then runs fit, validate, test and predict."""

from __future__ import annotations

import contextlib
import math
import os
import signal
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

import torch

from fulmen import resolve
from fulmen.accelerators.accelerator import Accelerator
from fulmen.callbacks.callback import Callback
from fulmen.callbacks.early_stopping import EarlyStopping
from fulmen.callbacks.model_checkpoint import ModelCheckpoint
from fulmen.callbacks.on_exception_checkpoint import OnExceptionCheckpoint
from fulmen.callbacks.timer import Timer
from fulmen.checkpoint import format as ckpt_format
from fulmen.checkpoint.preemption import SignalAgreement, SignalWatcher
from fulmen.core.datamodule import LightningDataModule
from fulmen.logging import MetricStore, MetricViews
from fulmen.loops import data
from fulmen.loops.evaluation_loop import _EvaluationLoop
from fulmen.loops.fit_loop import _FitLoop
from fulmen.loops.loop import LoopAttribute
from fulmen.loops.optimization.automatic import automatic_step
from fulmen.loops.prediction_loop import _PredictionLoop
from fulmen.core.module import LightningModule
from fulmen.core.optimizer import (LightningOptimizer, LRSchedulerConfig)
from fulmen.trainer.states import RunningStage, TrainerFn, TrainerState, TrainerStatus
from fulmen.strategies.single_device import SingleDeviceStrategy
from fulmen.strategies.strategy import Strategy
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.imports import module_available
from fulmen.utilities.argparse import _defaults_from_env_vars
from fulmen.trainer.run import _Overrides, run, spawn, spawns
from fulmen.utilities.rank_zero import rank_zero_info, rank_zero_warn

if TYPE_CHECKING:  # the argument types, for readers and for the CLI (jsonargparse reads this block); imported
    # lazily at run time, as most runs use none of them
    from fulmen.loggers.logger import Logger
    from fulmen.loops.hooks import Hooks
    from fulmen.profilers import Profiler
    from fulmen.strategies.deepspeed import DeepSpeedStrategy
    from fulmen.strategies.parallel import ParallelStrategy


class Trainer:
    """Runs a LightningModule: ``fit``, ``validate``, ``test`` and ``predict``.

    Every argument is keyword-only and checked here, so a mistake raises before any data is read; each has
    Lightning's name, default and meaning (docs/trainer.md lists them).
    """

    # Lightning's loop objects, views of the run state (loops/): read them, but they cannot be replaced.
    fit_loop: LoopAttribute[_FitLoop] = LoopAttribute()
    validate_loop: LoopAttribute[_EvaluationLoop] = LoopAttribute()
    test_loop: LoopAttribute[_EvaluationLoop] = LoopAttribute()
    predict_loop: LoopAttribute[_PredictionLoop] = LoopAttribute()

    @_defaults_from_env_vars
    def __init__(
        self,
        *,
        accelerator: Union[str, Accelerator] = "auto",
        strategy: Union[str, SingleDeviceStrategy, ParallelStrategy, DeepSpeedStrategy] = "auto",
        devices: Union[list[int], str, int] = "auto",
        num_nodes: int = 1,
        precision: Optional[Union[int, str]] = None,
        logger: Optional[Union[Logger, list[Logger], bool]] = None,
        callbacks: Optional[Union[list[Callback], Callback]] = None,
        fast_dev_run: Union[int, bool] = False,
        max_epochs: Optional[int] = None,
        min_epochs: Optional[int] = None,
        max_steps: int = -1,
        min_steps: Optional[int] = None,
        max_time: Optional[Union[str, timedelta, dict[str, int]]] = None,
        # Written Union[int, float, None], not Optional[Union[int, float]]: typing caches Optional[...] of a union
        # by the union's set of types, so once any imported module has written Optional[Union[float, int]], the
        # other order would come back here, and the CLI (jsonargparse tries the types in order) would read
        # --trainer.limit_train_batches=10 as 10.0, a fraction.
        limit_train_batches: Union[int, float, None] = None,
        limit_val_batches: Union[int, float, None] = None,
        limit_test_batches: Union[int, float, None] = None,
        limit_predict_batches: Union[int, float, None] = None,
        overfit_batches: Union[int, float] = 0.0,
        val_check_interval: Union[int, float, str, timedelta, dict[str, int], None] = None,
        check_val_every_n_epoch: Optional[int] = 1,
        num_sanity_val_steps: Optional[int] = None,
        log_every_n_steps: Optional[int] = None,
        enable_checkpointing: Optional[bool] = None,
        enable_progress_bar: Optional[bool] = None,
        enable_model_summary: Optional[bool] = None,
        accumulate_grad_batches: int = 1,
        gradient_clip_val: Union[int, float, None] = None,
        gradient_clip_algorithm: Optional[str] = None,
        deterministic: Optional[Union[bool, str]] = None,
        benchmark: Optional[bool] = None,
        inference_mode: bool = True,
        use_distributed_sampler: bool = True,
        profiler: Optional[Union[Profiler, str]] = None,
        detect_anomaly: bool = False,
        barebones: bool = False,
        plugins: Optional[Any] = None,
        sync_batchnorm: bool = False,
        reload_dataloaders_every_n_epochs: int = 0,
        default_root_dir: Optional[Union[str, os.PathLike[str]]] = None,
        enable_autolog_hparams: bool = True,
        model_registry: Optional[str] = None,
        compile: Union[bool, dict[str, Any]] = False,
        skip_nonfinite: bool = False,
    ) -> None:
        """Check every argument and resolve it once (strings become objects here); nothing is read or started
        until ``fit``, ``validate``, ``test`` or ``predict``. docs/trainer.md has each with an example.

        Args:
            accelerator: ``"auto"`` takes CUDA, then MPS, then a TPU (torch_xla), then the CPU; ``"gpu"`` is CUDA or
                MPS; ``"cpu"``, ``"cuda"``, ``"mps"``, ``"tpu"`` (one XLA device), or an ``Accelerator`` object. See
                Devices.
            strategy: how the devices share the work: ``"auto"``, ``"single_device"``, ``"ddp"``, ``"ddp_spawn"``,
                ``"ddp_fork"``, ``"ddp_notebook"``, ``"ddp_find_unused_parameters_true"``, ``"fsdp"``,
                ``"fsdp_cpu_offload"``, ``"deepspeed*"``, or a strategy object. See Distributed training.
            devices: how many devices (or which); ``-1`` is all; ``"auto"`` is every visible GPU, or one CPU process.
            num_nodes: machines in the job; each runs ``devices`` processes.
            precision: ``"64-true"``, ``"32-true"``, ``"16-mixed"``, ``"bf16-mixed"``, ``"16-true"``, ``"bf16-true"``,
                ``"transformer-engine"``, or the legacy ``64``, ``32``, ``16``, ``"bf16"``. See Precision.
            logger: where metrics go; ``True`` is a TensorBoardLogger (or a CSVLogger without tensorboard). See Logging.
            callbacks: one callback or a list. See Callbacks.
            fast_dev_run: run 1 (or n) batches of training, validation and test, without loggers, checkpoints or sanity
                check: a smoke test.
            max_epochs: stop after this many epochs; ``-1`` never (with ``max_steps`` or ``max_time``).
            min_epochs: early stopping cannot end the fit before this many epochs.
            max_steps: stop after this many optimizer steps (``global_step``).
            min_steps: early stopping cannot end the fit before this many steps.
            max_time: stop once this much time has passed (DD:HH:MM:SS), at the next batch boundary.
            limit_train_batches: a fraction of the training batches, or a count, per epoch; ``0`` skips training.
            limit_val_batches: the same for each validation run; ``0`` turns validation off.
            limit_test_batches: the same for ``test``.
            limit_predict_batches: the same for ``predict``.
            overfit_batches: train and validate on the same first batches (a fraction or a count), without shuffling: a
                check that the model can learn them.
            val_check_interval: validate every fraction of an epoch, every n training batches, or every so much time.
            check_val_every_n_epoch: validate every n epochs; ``None`` with an int ``val_check_interval`` counts batches
                across epochs.
            num_sanity_val_steps: validation batches run before training to catch bugs early; ``-1`` runs all.
            log_every_n_steps: how often step values reach the loggers.
            enable_checkpointing: add a default ``ModelCheckpoint`` (the last epoch's weights) when none is given.
            enable_progress_bar: a progress bar: ``RichProgressBar`` when rich is installed, else ``TQDMProgressBar``
                when tqdm is.
            enable_model_summary: print the layer table at the start of fit (``RichModelSummary`` when rich is
                installed).
            accumulate_grad_batches: sum the gradients of n batches before each optimizer step.
            gradient_clip_val: clip the gradients before each step (after unscaling under 16-mixed).
            gradient_clip_algorithm: clip the total norm, or each value.
            deterministic: ``torch.use_deterministic_algorithms`` and ``CUBLAS_WORKSPACE_CONFIG``.
            benchmark: ``torch.backends.cudnn.benchmark``.
            inference_mode: evaluate under ``torch.inference_mode`` (``False``: ``torch.no_grad``).
            use_distributed_sampler: give each loader a ``DistributedSampler`` when there are several processes.
            profiler: time each hook and step. See Profiling.
            detect_anomaly: run backward under ``torch.autograd.detect_anomaly`` (slow; finds where a NaN starts).
            barebones: no logger, checkpointing, progress bar, summary, sanity check, anomaly detection or profiler: the
                least overhead; turning one of them on as well is an error.
            plugins: plugins from ``fulmen.plugins``, alone or in a list, at most one of each kind: a precision plugin,
                a cluster environment (``KubeflowEnvironment()``, or your own; the others are found from the
                environment), a checkpoint IO (``AsyncCheckpointIO()``, see Checkpointing), a layer sync
                (``TorchSyncBatchNorm()``, as ``sync_batchnorm=True``).
            sync_batchnorm: batch-norm statistics computed across processes (the strategy converts the layers).
            reload_dataloaders_every_n_epochs: call the ``*_dataloader`` hooks again every n epochs.
            default_root_dir: where logs and checkpoints go when their own settings do not say.
            enable_autolog_hparams: give the module's and data module's hyperparameters to the loggers at the start.
            model_registry: accepted for compatibility with Lightning (its model-registry upload); fulmen does not
                upload.
            compile: a fulmen addition: ``torch.compile`` the module's ``forward`` with these options (``True``: the
                defaults).
            skip_nonfinite: a fulmen addition: a batch whose loss is NaN or infinite gets no backward (as if
                ``training_step`` returned None); each is counted in ``trainer.nonfinite_skipped``, warned about and
                logged as ``nonfinite_skipped``. The check reads the loss on the host every step (automatic optimization
                only).
        """
        # ---- devices, strategy and precision: strings become objects here, once
        self._accelerator = resolve.accelerator(accelerator)
        accel_name = self._accelerator.name
        self._device_ids = resolve.devices(devices, accel_name)
        self.num_nodes = resolve.check_int("num_nodes", num_nodes, 1)
        given = resolve.plugins(plugins)
        self.strategy: Strategy = resolve.strategy(strategy, self._device_ids, self.num_nodes, accel_name,
                                              given.environment)
        if given.checkpoint_io is not None:
            self.strategy.checkpoint_io = given.checkpoint_io
        self.precision_plugin = resolve.precision(precision, accel_name, given.precision)
        self.strategy.check_precision(self.precision_plugin.precision)

        # ---- loop limits
        self.fast_dev_run = resolve.fast_dev_run(fast_dev_run)
        self.max_steps = resolve.check_int("max_steps", max_steps, -1)
        self.min_steps = resolve.check_int("min_steps", min_steps, 0, allow_none=True)
        resolve.check_int("max_epochs", max_epochs, -1, allow_none=True)
        self.min_epochs = resolve.check_int("min_epochs", min_epochs, 0, allow_none=True)
        self._max_time = resolve.max_time("max_time", max_time)
        self.limit_train_batches = resolve.limit_batches("limit_train_batches", limit_train_batches)
        self.limit_val_batches = resolve.limit_batches("limit_val_batches", limit_val_batches)
        self.limit_test_batches = resolve.limit_batches("limit_test_batches", limit_test_batches)
        self.limit_predict_batches = resolve.limit_batches("limit_predict_batches", limit_predict_batches)
        self.overfit_batches = resolve.limit_batches("overfit_batches", overfit_batches)
        self.val_check_interval = resolve.val_check_interval(val_check_interval)
        self.check_val_every_n_epoch = resolve.check_int("check_val_every_n_epoch", check_val_every_n_epoch, 1,
                                                         allow_none=True)
        sanity = 2 if num_sanity_val_steps is None else resolve.check_int("num_sanity_val_steps",
                                                                          num_sanity_val_steps, -1)
        # -1 checks every validation batch: reported as inf, as Lightning does.
        self.num_sanity_val_steps: Union[int, float] = float("inf") if sanity == -1 else sanity
        self.log_every_n_steps = 50 if log_every_n_steps is None else resolve.check_int(
            "log_every_n_steps", log_every_n_steps, 0)
        self.accumulate_grad_batches = resolve.check_int("accumulate_grad_batches", accumulate_grad_batches, 1)
        self.gradient_clip_val, self.gradient_clip_algorithm = resolve.gradient_clip(gradient_clip_val,
                                                                                     gradient_clip_algorithm)
        self.reload_dataloaders_every_n_epochs = resolve.check_int(
            "reload_dataloaders_every_n_epochs", reload_dataloaders_every_n_epochs, 0)
        if self.overfit_batches:
            self.limit_train_batches = self.limit_val_batches = self.overfit_batches
        if self.fast_dev_run:
            n = self.fast_dev_run
            self.limit_train_batches = self.limit_val_batches = n
            self.limit_test_batches = self.limit_predict_batches = n
            self.max_steps, max_epochs = n, 1
            self.num_sanity_val_steps, self.val_check_interval, self.check_val_every_n_epoch = 0, 1.0, 1
            rank_zero_info(f"Running in fast_dev_run mode: will run {n} batch(es) of each stage")
        if max_epochs is None:
            if self.max_steps == -1 and self._max_time is None:
                rank_zero_warn("max_epochs was not set; training stops after 1000 epochs. Set max_epochs (or -1 "
                               "for no limit) to silence this warning")
                max_epochs = 1000
            else:
                max_epochs = -1
        self.max_epochs: int = max_epochs
        if self.min_epochs is None:
            self.min_epochs = 1 if self.min_steps else 0

        # ---- switches
        resolve.check_bool("inference_mode", inference_mode, allow_none=False)
        resolve.check_bool("detect_anomaly", detect_anomaly, allow_none=False)
        resolve.check_bool("barebones", barebones, allow_none=False)
        resolve.check_bool("use_distributed_sampler", use_distributed_sampler, allow_none=False)
        resolve.check_bool("sync_batchnorm", sync_batchnorm, allow_none=False)
        resolve.check_bool("enable_autolog_hparams", enable_autolog_hparams, allow_none=False)
        resolve.check_bool("skip_nonfinite", skip_nonfinite, allow_none=False)
        resolve.check_bool("benchmark", benchmark)
        for name, value in (("enable_checkpointing", enable_checkpointing),
                            ("enable_progress_bar", enable_progress_bar),
                            ("enable_model_summary", enable_model_summary)):
            resolve.check_bool(name, value)
        if deterministic not in (None, True, False, "warn"):
            raise ValueError(f"Trainer(deterministic={deterministic!r}) is not supported; pass True, False or 'warn'")
        self.inference_mode = inference_mode
        self.detect_anomaly = detect_anomaly
        self.barebones = barebones
        self.use_distributed_sampler = use_distributed_sampler
        self.sync_batchnorm = sync_batchnorm
        if given.layer_sync is not None:
            self.strategy.layer_sync = given.layer_sync
        elif sync_batchnorm:
            from fulmen.plugins.layer_sync import TorchSyncBatchNorm

            self.strategy.layer_sync = TorchSyncBatchNorm()
        self.enable_autolog_hparams = enable_autolog_hparams
        if not isinstance(compile, (bool, dict)):
            raise TypeError(f"Trainer(compile={compile!r}) must be True, False or a dict of torch.compile options "
                            "such as {'mode': 'max-autotune'}")
        # torch.compile options for the module's forward, or None (a fulmen addition: Lightning has no switch).
        self._compile: Optional[dict[str, Any]] = (compile if isinstance(compile, dict) else {}) if compile else None
        self.model_registry = model_registry
        # A fulmen addition: drop the backward of a batch whose loss is NaN or infinite, count it and log the count.
        self.skip_nonfinite = skip_nonfinite
        self.nonfinite_skipped = 0
        self.deterministic = deterministic
        if barebones:
            resolve.check_barebones(logger, enable_checkpointing, enable_progress_bar, enable_model_summary,
                                  num_sanity_val_steps, log_every_n_steps, detect_anomaly, profiler)
            enable_checkpointing = enable_progress_bar = enable_model_summary = False
            logger = False
            self.num_sanity_val_steps, self.log_every_n_steps = 0, 0
        self._apply_determinism(deterministic, benchmark)
        from fulmen import profilers

        self.profiler = profilers.resolve(profiler)
        # What the loops test: None when profiling is off, so that nothing gets wrapped.
        self._profiler = None if isinstance(self.profiler, profilers.PassThroughProfiler) else self.profiler

        self._default_root_dir = os.fspath(default_root_dir) if default_root_dir is not None else None
        self.loggers: list[Any] = self._init_loggers(logger)
        self.callbacks: list[Callback] = self._init_callbacks(callbacks, enable_checkpointing, enable_model_summary,
                                                              enable_progress_bar)
        self.enable_progress_bar = enable_progress_bar is not False
        self.enable_checkpointing = enable_checkpointing is not False

        # ---- run state
        self.state = TrainerState()
        # The module of the current (or last) run; None before the first run. Typed as always there, as the loops
        # and callbacks that read it only run inside a run.
        self.lightning_module: LightningModule = None  # type: ignore[assignment]
        self.datamodule: Optional[LightningDataModule] = None
        self.optimizers: list[Any] = []
        self.lr_scheduler_configs: list[LRSchedulerConfig] = []
        self._lightning_optimizers: list[LightningOptimizer] = []
        self._metrics = MetricViews(self)
        self._train_store = MetricStore(training=True)
        self._results: Optional[MetricStore] = None
        self._eval: dict[RunningStage, data.EvalData] = {}
        self._train_source: Any = None
        self._eval_sources: dict[str, Any] = {}
        self.train_dataloader: Any = None
        self.num_training_batches: Union[int, float] = float("inf")
        self.val_check_batch: Union[int, float] = float("inf")
        # The hook dispatch of the current run (bound by trainer/run.py); typed as always there, as only the
        # loops, inside a run, call it.
        self._hooks: Hooks = None  # type: ignore[assignment]
        self._transfer: Optional[Callable[[Any, int], Any]] = None
        self._step_fn: Callable[..., Any] = automatic_step
        self._training_step: Callable[[Any, int], Any] = _no_step
        self._custom = _Overrides()
        self._wants_outputs = True
        self._verbose = True  # validate/test print their results table
        self._return_predictions = True
        # The loop objects Lightning's users read (views of the run state; the predict loop also keeps the last
        # run's predictions for BasePredictionWriter).
        self.fit_loop = _FitLoop(self)
        self.validate_loop = _EvaluationLoop(self, "validate")
        self.test_loop = _EvaluationLoop(self, "test")
        self.predict_loop = _PredictionLoop(self)
        self._callbacks_before_run: list[Callback] = list(self.callbacks)  # restored after each run
        self.ckpt_path: Optional[str] = None  # the checkpoint the last run started from
        self._signal_watcher: Optional[SignalWatcher] = None
        self._signal_agreement: Optional[SignalAgreement] = None  # several processes fitting: they stop together

    # ------------------------------------------------------------------------------------------ argument checks
    @staticmethod
    def _apply_determinism(deterministic: Any, benchmark: Optional[bool]) -> None:
        if deterministic:
            torch.use_deterministic_algorithms(True, warn_only=deterministic == "warn")
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        elif deterministic is False:
            torch.use_deterministic_algorithms(False)
        if benchmark is not None:
            torch.backends.cudnn.benchmark = benchmark
        elif deterministic:
            torch.backends.cudnn.benchmark = False

    def _init_loggers(self, logger: Any) -> list[Any]:
        if logger is False:
            return []
        if self.fast_dev_run:  # as in Lightning: a logger that records nothing, so user code using it still runs
            from fulmen.loggers.logger import DummyLogger

            return [DummyLogger()]
        if logger is None or logger is True:
            from fulmen.loggers.tensorboard import TensorBoardLogger, tensorboard_available

            if tensorboard_available():  # as in Lightning: TensorBoard when installed, else CSV
                return [TensorBoardLogger(save_dir=self.default_root_dir, version=_slurm_job_id())]
            from fulmen.loggers.csv_logs import CSVLogger

            return [CSVLogger(save_dir=self.default_root_dir)]
        loggers = list(logger) if isinstance(logger, (list, tuple)) else [logger]
        for item in loggers:
            # Any object with a logger's methods will do (Lightning takes them too); refuse what plainly is not one.
            if not callable(getattr(item, "log_metrics", None)):
                raise TypeError(f"Trainer(logger=...) got {item!r} of type {type(item).__name__}, which has no "
                                "log_metrics method; pass True, False, a fulmen.loggers.Logger (TensorBoardLogger, "
                                "CSVLogger, ...) or a list of them")
        return loggers

    def _init_callbacks(self, callbacks: Any, checkpointing: Any, summary: Any, progress: Any) -> list[Callback]:
        if callbacks is None:
            items: list[Any] = []
        elif isinstance(callbacks, (list, tuple)):
            items = list(callbacks)
        else:
            items = [callbacks]
        for cb in items:
            if not isinstance(cb, Callback):
                raise TypeError(f"Trainer(callbacks=...) got {cb!r} of type {type(cb).__name__}, which is not a "
                                "fulmen Callback; subclass fulmen.callbacks.Callback")
        from fulmen.callbacks.model_summary import ModelSummary
        from fulmen.callbacks.progress.progress_bar import ProgressBar

        # As Lightning: with rich installed, the default bar and summary are rich's; else tqdm's bar (an optional
        # extra too; without it, no default bar) and the plain summary table.
        rich = module_available("rich")
        bars = [cb for cb in items if isinstance(cb, ProgressBar)]
        if summary is not False and not any(isinstance(cb, ModelSummary) for cb in items):
            if rich:
                from fulmen.callbacks.rich_model_summary import RichModelSummary

                items.insert(0, RichModelSummary())
            else:
                items.insert(0, ModelSummary())
        if len(bars) > 1:
            raise MisconfigurationException(
                f"Trainer(callbacks=...) holds {len(bars)} progress bars ({[type(b).__name__ for b in bars]}); "
                "keep one"
            )
        if bars and progress is False:
            raise MisconfigurationException(
                f"Trainer(enable_progress_bar=False) but callbacks holds {type(bars[0]).__name__}; remove one of them"
            )
        if not bars and progress is not False:
            if rich:
                from fulmen.callbacks.progress.rich_progress import RichProgressBar

                items.append(RichProgressBar())
            elif module_available("tqdm"):
                from fulmen.callbacks.progress.tqdm_progress import TQDMProgressBar

                items.append(TQDMProgressBar())
        if self._max_time is not None and not any(isinstance(cb, Timer) for cb in items):
            items.append(Timer(self._max_time, interval="step"))
        checkpoints = [cb for cb in items if isinstance(cb, (ModelCheckpoint, OnExceptionCheckpoint))]
        if checkpoints and checkpointing is False:
            raise MisconfigurationException(
                f"Trainer(enable_checkpointing=False) but callbacks holds {type(checkpoints[0]).__name__}; remove "
                "one of them")
        if checkpointing is not False and not any(isinstance(cb, ModelCheckpoint) for cb in checkpoints):
            checkpoints.append(ModelCheckpoint())
        # As in Lightning, the tuning callbacks go first (they run before anything else starts) and the checkpoint
        # callbacks last (what they save includes what the other callbacks did).
        first = [cb for cb in items if getattr(cb, "_runs_first", False)]
        return first + [cb for cb in items if cb not in checkpoints and cb not in first] + checkpoints

    # ------------------------------------------------------------------------------------------ public API
    def fit(self, model: LightningModule, train_dataloaders: Any = None, val_dataloaders: Any = None,
            datamodule: Optional[LightningDataModule] = None, ckpt_path: Optional[str] = None,
            weights_only: Optional[bool] = None) -> None:
        """Train ``model``; data comes from the loaders, the datamodule, or the model's ``*_dataloader`` hooks."""
        if isinstance(train_dataloaders, LightningDataModule):
            train_dataloaders, datamodule = None, train_dataloaders
        if datamodule is not None and (train_dataloaders is not None or val_dataloaders is not None):
            raise MisconfigurationException(
                "Trainer.fit got both dataloaders and a datamodule; pass one or the other"
            )
        self._eval_sources = {"val": val_dataloaders}
        self._train_source = train_dataloaders
        if spawns(self):
            spawn(self, TrainerFn.FITTING, model, datamodule, ckpt_path, True, weights_only)
            return
        run(self, TrainerFn.FITTING, model, datamodule, ckpt_path, True, weights_only)

    def validate(self, model: Optional[LightningModule] = None, dataloaders: Any = None,
                 ckpt_path: Optional[str] = None, verbose: bool = True,
                 datamodule: Optional[LightningDataModule] = None,
                 weights_only: Optional[bool] = None) -> list[dict[str, float]]:
        """Run one validation epoch; returns one dict of logged epoch metrics per loader."""
        return self._evaluate(TrainerFn.VALIDATING, model, dataloaders, datamodule, ckpt_path, verbose, weights_only)

    def test(self, model: Optional[LightningModule] = None, dataloaders: Any = None,
             ckpt_path: Optional[str] = None, verbose: bool = True,
             datamodule: Optional[LightningDataModule] = None,
             weights_only: Optional[bool] = None) -> list[dict[str, float]]:
        """Run one test epoch; returns one dict of logged epoch metrics per loader."""
        return self._evaluate(TrainerFn.TESTING, model, dataloaders, datamodule, ckpt_path, verbose, weights_only)

    def predict(self, model: Optional[LightningModule] = None, dataloaders: Any = None,
                datamodule: Optional[LightningDataModule] = None, return_predictions: Optional[bool] = None,
                ckpt_path: Optional[str] = None, weights_only: Optional[bool] = None) -> Optional[list[Any]]:
        """Run ``predict_step`` over the data; returns the outputs (a list per loader when there are several)."""
        if isinstance(dataloaders, LightningDataModule):
            dataloaders, datamodule = None, dataloaders
        if datamodule is not None and dataloaders is not None:
            raise MisconfigurationException("Trainer.predict got both dataloaders and a datamodule; pass one")
        self._eval_sources = {"predict": dataloaders}
        self._return_predictions = True if return_predictions is None else return_predictions
        start = spawn if spawns(self) else run
        return start(self, TrainerFn.PREDICTING, self._model_or_attached(model, "predict"), datamodule, ckpt_path,
                     model is not None, weights_only)

    @contextlib.contextmanager
    def init_module(self, empty_init: Optional[bool] = None) -> Any:
        """Build the module inside this block to create its tensors directly on the run's device, in the
        precision's dtype for the '*-true' modes.

        ``empty_init=True`` skips the initialisation of the weights (they are left uninitialised: use it only
        when loading a checkpoint over them right after).
        """
        device = self.strategy.root_device
        dtype = self.precision_plugin.dtype
        with contextlib.ExitStack() as stack:
            if device.type != "cpu":
                stack.enter_context(device)
            if dtype is not None:
                previous = torch.get_default_dtype()
                torch.set_default_dtype(dtype)
                stack.callback(torch.set_default_dtype, previous)
            if empty_init:
                stack.enter_context(_skip_init())
            yield

    def save_checkpoint(self, filepath: Union[str, os.PathLike[str]], weights_only: bool = False,
                        storage_options: Optional[Any] = None) -> None:
        """Write a checkpoint of the run to ``filepath`` (a path or fsspec URL), atomically.

        ``weights_only=True`` keeps the weights, loop counters and hyperparameters only (enough for
        ``load_from_checkpoint``, not to resume a fit). The file loads with ``torch.load(weights_only=True)``.
        """
        if self.lightning_module is None:
            raise RuntimeError("Trainer.save_checkpoint needs a model attached to the Trainer: call it during or "
                               "after fit/validate/test/predict")
        checkpoint = ckpt_format.dump(self, weights_only=weights_only)
        # Rank 0 writes, through the strategy's checkpoint IO (every rank, for sharded states).
        self.strategy.save_checkpoint(checkpoint, filepath, storage_options)

    def print(self, *args: Any, **kwargs: Any) -> None:
        """``print`` on global rank zero only; through the progress bar (above it) while one is drawn."""
        if not self.is_global_zero:
            return
        bar = self.progress_bar_callback
        if bar is not None and bar.is_enabled:
            bar.print(*args, **kwargs)
        else:
            print(*args, **kwargs)

    def _evaluate(self, fn: TrainerFn, model: Any, dataloaders: Any, datamodule: Any, ckpt_path: Any,
                  verbose: bool, weights_only: Optional[bool]) -> list[dict[str, float]]:
        if isinstance(dataloaders, LightningDataModule):
            dataloaders, datamodule = None, dataloaders
        if datamodule is not None and dataloaders is not None:
            raise MisconfigurationException(f"Trainer.{fn.value} got both dataloaders and a datamodule; pass one")
        prefix = "val" if fn == TrainerFn.VALIDATING else "test"
        self._eval_sources = {prefix: dataloaders}
        self._verbose = verbose
        start = spawn if spawns(self) else run
        return start(self, fn, self._model_or_attached(model, fn.value), datamodule, ckpt_path, model is not None,
                     weights_only)

    def _model_or_attached(self, model: Any, verb: str) -> LightningModule:
        if model is None:
            if self.lightning_module is None:
                raise MisconfigurationException(f"Trainer.{verb}() needs a model: pass Trainer.{verb}(model, ...)")
            return self.lightning_module
        return model

    # ------------------------------------------------------------------------------------------ data
    def _stores(self) -> list[MetricStore]:
        return [self._train_store] + [data.store for data in self._eval.values()]

    # ------------------------------------------------------------------------------------------ properties
    @property
    def should_stop(self) -> bool:
        """Set to True to end the fit at the next batch boundary (honoured once min_epochs/min_steps are met)."""
        return self.state.should_stop

    @should_stop.setter
    def should_stop(self, value: bool) -> None:
        self.state.should_stop = bool(value)

    @property
    def current_epoch(self) -> int:
        """Training epochs completed; still N inside epoch N and its end hooks."""
        return self.state.epoch

    @property
    def global_step(self) -> int:
        """Optimizer steps taken."""
        return self.state.global_step

    @property
    def is_last_batch(self) -> bool:
        return self.state.is_last_batch

    @property
    def callback_metrics(self) -> dict[str, torch.Tensor]:
        """Every logged value by name (with _step/_epoch variants), for callbacks such as checkpointing."""
        return self._metrics.callback_metrics()

    @property
    def logged_metrics(self) -> dict[str, torch.Tensor]:
        """The values sent (or due) to the loggers."""
        return self._metrics.logged_metrics()

    @property
    def progress_bar_metrics(self) -> dict[str, float]:
        """The values logged with prog_bar=True, as numbers (reading them synchronises with the device)."""
        return self._metrics.progress_bar_metrics()

    @property
    def model(self) -> Optional[torch.nn.Module]:
        """The module as the strategy runs it (the LightningModule itself on one device)."""
        return self.lightning_module

    @property
    def accelerator(self) -> Accelerator:
        """The Accelerator object of the run's device kind (``CPUAccelerator``, ``CUDAAccelerator``, ...)."""
        return self._accelerator

    @property
    def precision(self) -> str:
        return self.precision_plugin.name

    @property
    def scaler(self) -> Any:
        return self.precision_plugin.scaler

    @property
    def device_ids(self) -> list[int]:
        return list(self._device_ids)

    @property
    def num_devices(self) -> int:
        return len(self._device_ids)

    @property
    def global_rank(self) -> int:
        return self.strategy.global_rank

    @property
    def local_rank(self) -> int:
        return self.strategy.local_rank

    @property
    def node_rank(self) -> int:
        return self.strategy.node_rank

    @property
    def world_size(self) -> int:
        return self.strategy.world_size

    @property
    def is_global_zero(self) -> bool:
        return self.strategy.global_rank == 0

    @property
    def default_root_dir(self) -> str:
        return self._default_root_dir if self._default_root_dir is not None else os.getcwd()

    @property
    def logger(self) -> Any:
        return self.loggers[0] if self.loggers else None

    @logger.setter
    def logger(self, logger: Any) -> None:
        self.loggers = [] if logger is None else [logger]

    @property
    def log_dir(self) -> str:
        logger = self.logger
        if logger is None:
            return self.default_root_dir
        return getattr(logger, "log_dir", None) or getattr(logger, "save_dir", None) or self.default_root_dir

    @property
    def interrupted(self) -> bool:
        return self.state.status == TrainerStatus.INTERRUPTED

    @property
    def training(self) -> bool:
        return self.state.stage == RunningStage.TRAINING

    @training.setter
    def training(self, value: bool) -> None:
        self._set_stage(RunningStage.TRAINING, value)

    @property
    def validating(self) -> bool:
        return self.state.stage == RunningStage.VALIDATING

    @validating.setter
    def validating(self, value: bool) -> None:
        self._set_stage(RunningStage.VALIDATING, value)

    @property
    def testing(self) -> bool:
        return self.state.stage == RunningStage.TESTING

    @testing.setter
    def testing(self, value: bool) -> None:
        self._set_stage(RunningStage.TESTING, value)

    @property
    def predicting(self) -> bool:
        return self.state.stage == RunningStage.PREDICTING

    @predicting.setter
    def predicting(self, value: bool) -> None:
        self._set_stage(RunningStage.PREDICTING, value)

    @property
    def sanity_checking(self) -> bool:
        return self.state.stage == RunningStage.SANITY_CHECKING

    @sanity_checking.setter
    def sanity_checking(self, value: bool) -> None:
        self._set_stage(RunningStage.SANITY_CHECKING, value)

    def _set_stage(self, stage: RunningStage, value: bool) -> None:
        if value:
            self.state.stage = stage
        elif self.state.stage == stage:
            self.state.stage = None

    @property
    def evaluating(self) -> bool:
        return self.state.stage is not None and self.state.stage.evaluating

    @property
    def enable_validation(self) -> bool:
        return data.validation_enabled(self)

    @property
    def received_sigterm(self) -> bool:
        """Whether SIGTERM arrived during a run of this Trainer (which then stopped at a batch boundary)."""
        return self.state.signal == signal.SIGTERM

    @property
    def val_dataloaders(self) -> Any:
        return self._loaders_of(RunningStage.VALIDATING)

    @property
    def test_dataloaders(self) -> Any:
        return self._loaders_of(RunningStage.TESTING)

    @property
    def predict_dataloaders(self) -> Any:
        return self._loaders_of(RunningStage.PREDICTING)

    def _loaders_of(self, stage: RunningStage) -> Any:
        data = self._eval.get(stage)
        if data is None:
            return None
        return data.loaders if data.several else (data.loaders[0] if data.loaders else None)

    @property
    def num_val_batches(self) -> list[Union[int, float]]:
        data = self._eval.get(RunningStage.VALIDATING)
        return list(data.limits) if data else []

    @property
    def num_sanity_val_batches(self) -> list[Union[int, float]]:
        data = self._eval.get(RunningStage.VALIDATING)
        return list(data.sanity_limits) if data else []

    @property
    def num_test_batches(self) -> list[Union[int, float]]:
        data = self._eval.get(RunningStage.TESTING)
        return list(data.limits) if data else []

    @property
    def num_predict_batches(self) -> list[Union[int, float]]:
        data = self._eval.get(RunningStage.PREDICTING)
        return list(data.limits) if data else []

    @property
    def estimated_stepping_batches(self) -> Union[int, float]:
        """Optimizer steps the fit will take: ceil(batches / accumulation) * max_epochs, capped by max_steps."""
        if self.state.fn == TrainerFn.FITTING and self.train_dataloader is None and self.lightning_module is not None:
            data.load_train_data(self)
        if self.num_training_batches == float("inf") or self.max_epochs == -1:
            return float("inf") if self.max_steps == -1 else self.max_steps
        steps = math.ceil(self.num_training_batches / self.accumulate_grad_batches) * max(self.max_epochs, 1)
        return min(steps, self.max_steps) if self.max_steps != -1 else steps

    @property
    def checkpoint_callbacks(self) -> list[ModelCheckpoint]:
        return [cb for cb in self.callbacks if isinstance(cb, ModelCheckpoint)]

    @property
    def checkpoint_callback(self) -> Optional[ModelCheckpoint]:
        cbs = self.checkpoint_callbacks
        return cbs[0] if cbs else None

    @property
    def early_stopping_callbacks(self) -> list[EarlyStopping]:
        return [cb for cb in self.callbacks if isinstance(cb, EarlyStopping)]

    @property
    def early_stopping_callback(self) -> Optional[EarlyStopping]:
        cbs = self.early_stopping_callbacks
        return cbs[0] if cbs else None

    @property
    def progress_bar_callback(self) -> Optional[Callback]:
        from fulmen.callbacks.progress.progress_bar import ProgressBar

        return next((cb for cb in self.callbacks if isinstance(cb, ProgressBar)), None)

    @property
    def distributed_sampler_kwargs(self) -> Optional[dict[str, int]]:
        return None


def _slurm_job_id() -> Optional[int]:
    """The SLURM job id of a batch job (the default logger's version there, as in Lightning); None elsewhere."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job or os.environ.get("SLURM_JOB_NAME") in ("bash", "interactive"):
        return None
    try:
        return int(job)  # each array task has its own SLURM_JOB_ID
    except ValueError:
        return None


@contextlib.contextmanager
def _skip_init() -> Any:
    """Turn torch.nn.init's in-place initialisers into no-ops (for modules whose weights are loaded right after)."""
    names = [n for n in dir(torch.nn.init) if n.endswith("_") and not n.startswith("_")]
    saved = {n: getattr(torch.nn.init, n) for n in names}

    def keep(tensor: Any, *args: Any, **kwargs: Any) -> Any:
        return tensor

    try:
        for n in names:
            setattr(torch.nn.init, n, keep)
        yield
    finally:
        for n, fn in saved.items():
            setattr(torch.nn.init, n, fn)


def _no_step(batch: Any, batch_idx: int) -> None:
    """The training step before a run binds the module's (a named function: a Trainer must pickle for ddp_spawn)."""

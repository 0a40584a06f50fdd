"""One run of the Trainer, from its set-up to its teardown: what ``fit``, ``validate``, ``test`` and ``predict``
share once their arguments are checked.

``run`` attaches the module and datamodule, binds the hooks, prepares the data, sets up the strategy, loads the
checkpoint to start from, configures the optimizers, then hands over to the loops (``fulmen/loops/``); it tears the
run down at the end, or on an exception tells the callbacks and ends the other processes. ``spawn`` runs it in new
processes for the ddp_spawn family of strategies and brings rank 0's results back.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional, cast

import torch

from fulmen.callbacks.callback import Callback
from fulmen.checkpoint import format as ckpt_format
from fulmen.checkpoint.preemption import SignalAgreement, SignalWatcher
from fulmen.checkpoint.select import select as select_checkpoint
from fulmen.core.datamodule import LightningDataModule
from fulmen.core.hooks import overrides, positional_count, set_hook_name
from fulmen.core.module import LightningModule
from fulmen.core.optimizer import LightningOptimizer, needs_closure, parse_optimizers, warn_foreign_parameters
from fulmen.core.saving import source_name
from fulmen.loops import fetchers
from fulmen.loops.evaluation_loop import print_results, run_evaluation
from fulmen.loops.fit_loop import run_fit
from fulmen.loops.hooks import Hooks, _noop
from fulmen.loops.optimization.automatic import automatic_step
from fulmen.loops.optimization.closure import closure_step
from fulmen.loops.optimization.manual import manual_step
from fulmen.loops.prediction_loop import run_predict
from fulmen.strategies.launchers.multiprocessing import SpawnLauncher
from fulmen.trainer.states import RunningStage, TrainerFn, TrainerStatus
from fulmen.utilities.compile import compile_forward, from_compiled, is_compiled
from fulmen.utilities.exceptions import MisconfigurationException, SIGTERMException, TunerExit
from fulmen.utilities.rank_zero import rank_zero_only, rank_zero_warn

if TYPE_CHECKING:
    from fulmen.profilers import Profiler
    from fulmen.strategies.parallel import ParallelStrategy
    from fulmen.trainer.trainer import Trainer


@dataclass
class _Overrides:
    """Which optional module hooks are overridden, found once per run so the step only checks booleans."""

    optimizer_zero_grad: bool = False
    backward: bool = False
    configure_gradient_clipping: bool = False
    lr_scheduler_step: bool = False


def run(trainer: "Trainer", fn: TrainerFn, model: Any, datamodule: Any, ckpt_path: Any, model_provided: bool = True,
        weights_only: Optional[bool] = None) -> Any:
    """Set up, run the stage, tear down; on an exception, tell the callbacks and re-raise.

    Pseudocode::

        attach model and datamodule; configure_callbacks; build the hook dispatch
        prepare_data (DM, module); setup (DM, callbacks, module); configure_model
        [ckpt_path] on_load_checkpoint, weights, datamodule and callback states
        [fit] configure_optimizers; on_fit_start; [ckpt_path] optimizer, scheduler and loop state; run_fit
        [validate/test] run_evaluation      [predict] run_predict
        teardown (DM, callbacks, module)
    """
    if is_compiled(model):
        model = from_compiled(model)  # run the LightningModule inside, with its forward and steps compiled
    if not isinstance(model, LightningModule):
        raise TypeError(f"Trainer.{fn.value} expects a fulmen LightningModule, got {type(model).__name__}; "
                        "subclass fulmen.LightningModule")
    if datamodule is not None and not isinstance(datamodule, LightningDataModule):
        raise TypeError(f"datamodule= expects a fulmen LightningDataModule, got {type(datamodule).__name__}")
    state = trainer.state
    state.fn, state.status, state.stage = fn, TrainerStatus.RUNNING, None
    state.should_stop = False
    state.in_epoch = False
    trainer.state.resume_plan = None
    trainer.state.save_position = None
    trainer.lightning_module = model
    model.trainer = trainer
    trainer.datamodule = datamodule
    if datamodule is not None:
        datamodule.trainer = trainer
    check_module(trainer, model, fn)
    trainer._eval.clear()
    trainer.train_dataloader = None
    trainer._metrics.drop_all()
    trainer._callbacks_before_run = list(trainer.callbacks)
    try:
        trainer.strategy.setup_environment()  # start or join the other processes of a multi-process run
        if trainer.world_size > 1:
            agree_on_log_versions(trainer)
        several = fn == TrainerFn.FITTING and trainer.world_size > 1
        trainer._signal_agreement = SignalAgreement(trainer) if several else None
        trainer._signal_watcher = SignalWatcher(trainer)
        trainer._signal_watcher.install()
        merge_module_callbacks(trainer, model)
        if trainer._profiler is not None:
            trainer._profiler.setup(stage=fn.value, local_rank=trainer.local_rank if trainer.world_size > 1 else None,
                                    log_dir=trainer.log_dir)
        hooks = trainer._hooks = Hooks(trainer, model, trainer.callbacks, trainer._profiler)
        trainer._wants_outputs = hooks.on_train_batch_end is not _noop
        prepare_run(trainer, model, datamodule)
        if datamodule is not None:
            datamodule.setup(stage=fn)
        hooks.setup(stage=fn)
        if overrides(model, LightningModule, "configure_model"):
            set_hook_name(model, "configure_model")
            model.configure_model()
        if trainer._compile is not None:
            compile_forward(model, trainer._compile)
        trainer._accelerator.setup_device(trainer.strategy.root_device)
        model = trainer.strategy.setup_module(model)
        trainer._accelerator.setup(trainer)
        trainer.precision_plugin.convert_module(model)
        model.zero_grad()  # before a checkpoint can bring back the gradients of an accumulation window
        trainer.ckpt_path, checkpoint = select_checkpoint(trainer, fn.value, ckpt_path, model_provided, weights_only)
        source = source_name(trainer.ckpt_path) if trainer.ckpt_path else ""
        if checkpoint is not None:
            ckpt_format.restore_modules(trainer, checkpoint, source)
        if fn == TrainerFn.FITTING:
            setup_optimizers(trainer, model)
            trainer._training_step = trainer.strategy.wrap_training_step(trainer, model, trainer._training_step)
            if trainer._profiler is not None:
                profile_steps(trainer, model, trainer._profiler)
            # As in Lightning, on_fit_start comes before the optimizer and loop state is restored (a callback
            # such as BaseFinetuning rebuilds the parameter groups that the saved optimizer state expects).
            hooks.on_fit_start()
            if checkpoint is not None:
                ckpt_format.restore_training(trainer, checkpoint, source)
            log_hyperparams(trainer, model, datamodule)
        anomaly = torch.autograd.set_detect_anomaly(True) if trainer.detect_anomaly else contextlib.nullcontext()
        with anomaly:
            if fn == TrainerFn.FITTING:
                run_fit(trainer)
                hooks.on_fit_end()
                out = None
            elif fn == TrainerFn.PREDICTING:
                out = run_predict(trainer, trainer._return_predictions)
            else:
                stage = RunningStage.VALIDATING if fn == TrainerFn.VALIDATING else RunningStage.TESTING
                require_eval_step(trainer, model, stage)
                out = run_evaluation(trainer, stage)
                if trainer._verbose and out:
                    print_results(out, stage)
        teardown(trainer, fn)
        state.status = TrainerStatus.FINISHED
        return out
    except TunerExit:  # a Tuner's finder has tuned: the run it started ends here, as a normal end
        teardown(trainer, fn)
        state.status = TrainerStatus.FINISHED
        return None
    except BaseException as exc:
        on_exception(trainer, exc, fn)
        # After a preemption every rank stops at the same batch: the others end as this one does.
        dead = stop_other_processes(trainer, graceful=isinstance(exc, SIGTERMException))
        if dead is not None:
            raise RuntimeError(f"{dead} during Trainer.{fn.value}, and the run stopped; see that process's "
                               "output for the cause") from exc
        if isinstance(exc, KeyboardInterrupt):
            rank_zero_warn("Detected KeyboardInterrupt, attempting graceful shutdown ...")
            sys.exit(1)
        raise
    finally:
        state.stage = None
        trainer._results = None


def on_exception(trainer: "Trainer", exc: BaseException, fn: TrainerFn) -> None:
    """Status INTERRUPTED, then on_exception (callbacks, datamodule), loggers finalized as 'failed'.

    As in Lightning, the user's teardown hooks do not run after an exception; only fulmen's own clean-up does.
    """
    trainer.state.status = TrainerStatus.INTERRUPTED
    trainer.state.interrupted_by = exc
    module = trainer.lightning_module
    if trainer._hooks is not None and module is not None:
        for cb in trainer.callbacks:
            if overrides(cb, Callback, "on_exception"):
                cb.on_exception(trainer, module, exc)
    if trainer.datamodule is not None:
        trainer.datamodule.on_exception(exc)
    for logger in trainer.loggers:
        logger.finalize("failed")
    clean_up(trainer, persistent_workers=True)


def spawns(trainer: "Trainer") -> bool:
    """Whether runs start their processes with torch.multiprocessing (ddp_spawn, ddp_fork, ddp_notebook)."""
    return isinstance(trainer.strategy.launcher, SpawnLauncher)


def spawn(trainer: "Trainer", fn: TrainerFn, model: Any, *args: Any) -> Any:
    """Run in new processes (this one only waits), then take rank 0's results into this Trainer and model,
    as Lightning's ddp_spawn does: the weights, the loop counters, the metrics and the checkpoint paths."""
    if not isinstance(model, LightningModule):
        raise TypeError(f"Trainer.{fn.value} expects a fulmen LightningModule, got {type(model).__name__}")
    launcher = trainer.strategy.launcher
    assert isinstance(launcher, SpawnLauncher)  # (spawns(trainer) chose this path)
    packed = launcher.launch(_spawned_run, trainer, fn, model, *args)
    if packed is None:
        return None
    # Our own worker wrote it; predictions may hold any objects, so this is not a weights-only load.
    results = torch.load(io.BytesIO(packed), weights_only=False)
    model.load_state_dict(results["state_dict"])
    trainer.lightning_module = model
    model.trainer = trainer
    for name, value in results["state"].items():
        setattr(trainer.state, name, value)
    trainer._metrics.callback.update(results["callback_metrics"])
    trainer._metrics.logged.update(results["logged_metrics"])
    for cb, paths in zip(trainer.checkpoint_callbacks, results["checkpoints"]):
        cb.best_model_path, cb.best_model_score, cb.last_model_path = paths
    return results["output"]


def agree_on_log_versions(trainer: "Trainer") -> None:
    """Rank 0 claims each logger's version folder and tells the others, so that every rank means the same
    log_dir (and checkpoint folder): the others would otherwise count the folders at another moment."""
    from fulmen.loggers.logger import VersionedFolder

    for logger in trainer.loggers:
        if isinstance(logger, VersionedFolder) and logger._version is None:
            logger._version = trainer.strategy.broadcast(logger.version if trainer.is_global_zero else None)


def stop_other_processes(trainer: "Trainer", graceful: bool = False) -> Optional[str]:
    """After a failure here: end the processes this one started, and say which of them died first, if one did
    (its death is then the likely cause of this failure, a collective whose peer went away). ``graceful``: they
    are stopping too (a preemption), so give them a minute to save and exit."""
    launcher = trainer.strategy.launcher
    if launcher is None or not launcher.procs:
        return None
    if graceful:
        launcher.wait(timeout=60.0)
        return None
    deadline = time.monotonic() + 2.0
    dead = launcher.dead_rank()
    while dead is None and time.monotonic() < deadline and any(p.poll() is None for p in launcher.procs):
        time.sleep(0.05)  # a peer that closed its connection is usually a process that is exiting
        dead = launcher.dead_rank()
    launcher.kill()
    return dead


def teardown(trainer: "Trainer", fn: TrainerFn) -> None:
    """The end of a run that finished: teardown hooks (datamodule first), loggers finalized, clean-up."""
    if trainer.datamodule is not None:
        trainer.datamodule.teardown(stage=fn)
    if trainer._hooks is not None:
        trainer._hooks.teardown(stage=fn)
    for logger in trainer.loggers:
        logger.finalize("success")
    clean_up(trainer)


def profile_steps(trainer: "Trainer", model: LightningModule, profiler: "Profiler") -> None:
    """With a profiler: time each training step and whole batch, and name module forwards in torch traces."""
    from fulmen.profilers import profiled

    trainer._training_step = profiled(profiler, f"[Strategy]{type(trainer.strategy).__name__}.training_step",
                                      trainer._training_step)
    trainer._step_fn = profiled(profiler, "run_training_batch", trainer._step_fn)
    if hasattr(profiler, "watch_modules"):
        profiler.watch_modules(model)


def clean_up(trainer: "Trainer", persistent_workers: bool = False) -> None:
    """fulmen's own end of a run: worker processes (``persistent_workers`` too, after an exception), the
    profiler's summary, the callbacks and signal handlers of before the run, the strategy and accelerator."""
    fetchers.shut_down_workers(persistent=persistent_workers)
    if trainer._profiler is not None:
        trainer._profiler.describe()
    trainer.callbacks = trainer._callbacks_before_run
    if trainer._signal_watcher is not None:
        trainer._signal_watcher.restore()
        trainer._signal_watcher = None
    trainer.strategy.teardown()
    trainer._accelerator.teardown()


def log_hyperparams(trainer: "Trainer", model: LightningModule, datamodule: Any) -> None:
    """Hand the module's and datamodule's initial hyperparameters to every logger, once per fit."""
    if not trainer.loggers or not trainer.enable_autolog_hparams:
        return
    params: dict[str, Any] = {}
    internal = ("_class_path", "_instantiator")  # what the CLI keeps to rebuild the objects: not for loggers
    if model._log_hyperparams:
        params.update((k, v) for k, v in model.hparams_initial.items() if k not in internal)
    if datamodule is not None and datamodule._log_hyperparams:
        for key, value in datamodule.hparams_initial.items():
            if key in internal:
                continue
            if key in params and params[key] != value:
                raise RuntimeError(
                    f"The module and the datamodule both save hyperparameter {key!r}, with different values "
                    f"({params[key]!r} and {value!r}); rename one, or pass save_hyperparameters(logger=False)"
                )
            params[key] = value
    for logger in trainer.loggers:
        if params:
            logger.log_hyperparams(params)
        logger.log_graph(model)
        logger.save()


def check_module(trainer: "Trainer", model: LightningModule, fn: TrainerFn) -> None:
    for removed in ("training_epoch_end", "validation_epoch_end", "test_epoch_end"):
        if callable(getattr(model, removed, None)):
            new = removed.replace("_epoch_end", "").replace("training", "train")
            raise NotImplementedError(
                f"{type(model).__name__}.{removed} was removed in Lightning 2.0; move its code to "
                f"on_{new}_epoch_end and keep the step outputs yourself if you need them"
            )
    if fn != TrainerFn.FITTING:
        return
    if not overrides(model, LightningModule, "training_step"):
        raise MisconfigurationException(
            f"{type(model).__name__} has no training_step; Trainer.fit needs training_step(self, batch, "
            "batch_idx) returning the loss, and configure_optimizers"
        )
    if not overrides(model, LightningModule, "configure_optimizers"):
        raise MisconfigurationException(
            f"{type(model).__name__} has no configure_optimizers; define it to return an optimizer, e.g. "
            "torch.optim.Adam(self.parameters(), lr=1e-3)"
        )
    if not model.automatic_optimization:
        if trainer.accumulate_grad_batches != 1:
            raise MisconfigurationException(
                f"Trainer(accumulate_grad_batches={trainer.accumulate_grad_batches}) does not apply under manual "
                "optimization (automatic_optimization=False); accumulate in training_step yourself and remove "
                "the Trainer argument"
            )
        if trainer.gradient_clip_val:
            raise MisconfigurationException(
                f"Trainer(gradient_clip_val={trainer.gradient_clip_val}) does not apply under manual optimization; "
                "call self.clip_gradients(opt, gradient_clip_val=...) in training_step and remove the Trainer "
                "argument"
            )


def require_eval_step(trainer: "Trainer", model: LightningModule, stage: RunningStage) -> None:
    name = "validation_step" if stage == RunningStage.VALIDATING else "test_step"
    if not overrides(model, LightningModule, name):
        verb = "validate" if stage == RunningStage.VALIDATING else "test"
        raise MisconfigurationException(
            f"Trainer.{verb} needs {type(model).__name__}.{name}; define {name}(self, batch, batch_idx)"
        )


def merge_module_callbacks(trainer: "Trainer", model: LightningModule) -> None:
    """Add ``configure_callbacks()`` results, replacing Trainer callbacks of the same type."""
    if not overrides(model, LightningModule, "configure_callbacks"):
        return
    set_hook_name(model, "configure_callbacks")
    extra = model.configure_callbacks()
    set_hook_name(model, None)
    extra = list(extra) if isinstance(extra, (list, tuple)) else [extra] if extra is not None else []
    for cb in extra:
        if not isinstance(cb, Callback):
            raise TypeError(f"configure_callbacks returned {cb!r}, which is not a fulmen Callback")
    types = {type(cb) for cb in extra}
    kept = [cb for cb in trainer.callbacks if type(cb) not in types]
    # Checkpoint callbacks go last so that they see everything the others did.
    merged = kept + extra
    first = [cb for cb in merged if getattr(cb, "_runs_first", False)]
    late = [cb for cb in merged if getattr(cb, "_runs_after_module_epoch_end", False)]
    trainer.callbacks = first + [cb for cb in merged if cb not in late and cb not in first] + late


def prepare_run(trainer: "Trainer", model: LightningModule, datamodule: Any) -> None:
    """prepare_data (datamodule first), the batch transfer function, and the step flavour."""
    # Downloads and the like: once per node (prepare_data_per_node) or once in all; the others wait for it.
    for owner, base in ((datamodule, LightningDataModule), (model, LightningModule)):
        if owner is None or not overrides(owner, base, "prepare_data"):
            continue
        if (trainer.local_rank if owner.prepare_data_per_node else trainer.global_rank) == 0:
            set_hook_name(model, "prepare_data" if owner is model else None)
            owner.prepare_data()
            set_hook_name(model, None)
    trainer.strategy.barrier("prepare_data")
    trainer._transfer = make_transfer(trainer, model, datamodule)
    trainer._custom = _Overrides(*(overrides(model, LightningModule, name) for name in (
        "optimizer_zero_grad", "backward", "configure_gradient_clipping", "lr_scheduler_step")))
    step = model.training_step
    # Bound once per run: the loops always pass (batch, batch_idx); a step that takes only the batch gets it.
    trainer._training_step = step if positional_count(step) != 1 else (lambda batch, batch_idx: step(batch))


def make_transfer(trainer: "Trainer", model: LightningModule, datamodule: Any) -> Optional[Callable[[Any, int], Any]]:
    """The batch-transfer hooks as one function, or None when nothing needs doing (CPU, default hooks)."""
    names = ("on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer")
    funcs = []
    for name in names:
        dm_overrides = datamodule is not None and overrides(datamodule, LightningDataModule, name)
        if dm_overrides and overrides(model, LightningModule, name):
            rank_zero_warn(f"Both the datamodule and the module override {name}; the datamodule's is used")
        funcs.append(getattr(datamodule, name) if dm_overrides else getattr(model, name))
    custom = [f for f, name in zip(funcs, names) if getattr(f, "__func__", None) is not getattr(
        LightningModule, name) and getattr(f, "__func__", None) is not getattr(LightningDataModule, name)]
    device = trainer.strategy.root_device
    precision = trainer.precision_plugin
    if not custom and device.type == "cpu" and precision.dtype is None:
        return None
    before, move, after = funcs

    def transfer(batch: Any, dataloader_idx: int) -> Any:
        batch = precision.convert_input(batch)
        set_hook_name(model, "on_before_batch_transfer")
        batch = before(batch, dataloader_idx)
        set_hook_name(model, "transfer_batch_to_device")
        batch = move(batch, device, dataloader_idx)
        set_hook_name(model, "on_after_batch_transfer")
        batch = after(batch, dataloader_idx)
        set_hook_name(model, None)
        return batch

    return transfer


def setup_optimizers(trainer: "Trainer", model: LightningModule) -> None:
    set_hook_name(model, "configure_optimizers")
    conf = model.configure_optimizers()
    set_hook_name(model, None)
    automatic = model.automatic_optimization
    trainer.optimizers, trainer.lr_scheduler_configs = parse_optimizers(conf, automatic)
    if automatic and len(trainer.optimizers) > 1:
        raise MisconfigurationException(
            f"configure_optimizers returned {len(trainer.optimizers)} optimizers; training with several "
            "optimizers needs manual optimization: set self.automatic_optimization = False in __init__ and "
            "step them in training_step"
        )
    warn_foreign_parameters(model, trainer.optimizers)
    if trainer.precision_plugin.scaler is not None:
        closures = [type(opt).__name__ for opt in trainer.optimizers if needs_closure(opt)]
        if closures:
            raise MisconfigurationException(
                f"precision={trainer.precision!r} scales the loss with a GradScaler, which cannot step "
                f"{closures[0]} (it re-evaluates the loss in a closure); use precision='bf16-mixed' or "
                "'32-true' with it")
    trainer._lightning_optimizers = []
    for opt in trainer.optimizers:
        lopt = LightningOptimizer(opt)
        lopt._trainer = trainer
        trainer._lightning_optimizers.append(lopt)
    if not automatic:
        trainer._step_fn = manual_step
    elif trainer.strategy.automatic_step is not None:  # an engine's own (DeepSpeed)
        trainer._step_fn = trainer.strategy.automatic_step
    elif overrides(model, LightningModule, "optimizer_step") or needs_closure(trainer.optimizers[0]):
        trainer._step_fn = closure_step
    else:
        trainer._step_fn = automatic_step


def _spawned_run(local_rank: int, trainer: Trainer, fn: TrainerFn, model: LightningModule, *args: Any) -> None:
    """One process of a ddp_spawn run: take its rank, run, and (rank 0) put the results in the queue."""
    *run_args, results = args
    os.environ["LOCAL_RANK"] = str(local_rank)
    # torch.multiprocessing hands the spawned processes the model's tensors in shared memory: each rank needs its
    # own, or every optimizer step would land on the same weights once per rank.
    for sub in model.modules():
        for param in sub._parameters.values():
            if param is not None:
                param.data = param.data.clone()
        for name, own in sub._buffers.items():
            if own is not None:
                sub._buffers[name] = own.clone()
    strategy = cast("ParallelStrategy", trainer.strategy)  # (only the ddp_spawn family spawns)
    env = strategy.cluster_environment
    assert env is not None  # (chosen when the strategy was set up, before the processes started)
    env.set_global_rank(env.node_rank() * strategy.num_processes + local_rank)
    rank_zero_only.rank = env.global_rank()  # type: ignore[attr-defined]
    output = run(trainer, fn, model, *run_args)
    if trainer.is_global_zero:
        state = trainer.state
        # As bytes: tensors put in the queue would be shared through this process's memory, gone once it exits.
        buffer = io.BytesIO()
        torch.save({
            "output": output,
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "state": {"epoch": state.epoch, "global_step": state.global_step,
                      "batches_that_stepped": state.batches_that_stepped},
            "callback_metrics": {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v
                                 for k, v in trainer.callback_metrics.items()},
            "logged_metrics": {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v
                               for k, v in trainer.logged_metrics.items()},
            "checkpoints": [(cb.best_model_path, cb.best_model_score, cb.last_model_path)
                            for cb in trainer.checkpoint_callbacks],
        }, buffer)
        results.put(buffer.getvalue())

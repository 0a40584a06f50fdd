"""The checkpoint dictionary: Lightning's layout, plain data only, plus fulmen's resume record.

Top-level keys, as Lightning 2.x writes them: ``epoch``, ``global_step``, ``pytorch-lightning_version``,
``state_dict``, ``loops``, then (full checkpoints) ``callbacks``, ``optimizer_states``, ``lr_schedulers`` and the
precision plugin's state under its class name; ``hparams_name``/``hyper_parameters`` and the datamodule's
``datamodule_hparams_name``/``datamodule_hyper_parameters`` and state; then whatever ``on_save_checkpoint`` adds.
fulmen adds one key, ``fulmen``, holding what exact resume needs (``checkpoint/resume.py``). Lightning ignores it, so
a fulmen checkpoint loads into Lightning, and a Lightning checkpoint (without it) loads into fulmen.

Every value is a tensor, number, string, None, list, tuple or dict, so the file loads with
``torch.load(weights_only=True)``: what fulmen collects is made plain (``checkpoint/plain.py``), and the whole dict
is checked after the ``on_save_checkpoint`` hooks, before anything is written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional


from fulmen.callbacks.callback import Callback
from fulmen.checkpoint.plain import check_loadable, plain_numbers, to_plain
from fulmen.checkpoint.resume import plan_from_checkpoint, position_of, resume_record, take_own_record
from fulmen.core.hooks import overrides, set_hook_name
from fulmen.core.saving import load_module_state, plain_keys
from fulmen.trainer.states import LoopPhase
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.metric_state import load_metric_states

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer

# The Lightning release whose checkpoint layout fulmen writes. Lightning reads this key to decide which of its
# legacy upgrades to apply to a file; with a 2.x version it applies none, which is right for this layout.
LIGHTNING_FORMAT_VERSION = "2.6.0"
FULMEN_KEY = "fulmen"


def _progress(ready: int, completed: int, started: Optional[int] = None, processed: Optional[int] = None,
              ) -> dict[str, int]:
    out = {"ready": ready}
    if started is not None:
        out["started"] = started
    if processed is not None:
        out["processed"] = processed
    out["completed"] = completed
    return out


def _both(current: dict[str, int], total: dict[str, int], **extra: Any) -> dict[str, Any]:
    return {"total": total, "current": current, **extra}


def _batch_progress(current: int, total: int, pending: bool = False, is_last: Optional[bool] = None) -> dict:
    """Lightning's batch progress: ``pending`` means the last batch ran but its end hooks had not finished."""
    def counts(n: int) -> dict[str, int]:
        return _progress(n, n - 1 if pending and n else n, started=n, processed=n)
    out = _both(counts(current), counts(total))
    if is_last is not None:
        out["is_last_batch"] = is_last
    return out


def lightning_loops(trainer: "Trainer", position: dict[str, Any]) -> dict[str, Any]:
    """The ``loops`` entry in Lightning's form, computed from the run state, so that Lightning resumes from a
    fulmen checkpoint at the same epoch and step. (fulmen itself resumes from its own record, which is exact.)"""
    state = trainer.state
    epoch, done = position["epoch"], position["batches_done"]
    in_epoch = position["phase"] != LoopPhase.BETWEEN_EPOCHS
    pending = position["phase"] == LoopPhase.BATCH_END
    epochs = _progress(epoch + 1 if in_epoch else epoch, epoch, started=epoch + 1 if in_epoch else epoch,
                       processed=epoch)
    steps, epoch_steps = state.global_step, state.global_step - trainer.state.epoch_step_start
    automatic = trainer.lightning_module.automatic_optimization if trainer.lightning_module is not None else True
    auto_steps, auto_epoch_steps = (steps, epoch_steps) if automatic else (0, 0)
    manual_steps, manual_epoch_steps = (0, 0) if automatic else (steps, epoch_steps)
    step_counts = _both(_progress(auto_epoch_steps, auto_epoch_steps), _progress(auto_steps, auto_steps))
    zero_grad_counts = _both(_progress(auto_epoch_steps, auto_epoch_steps, started=auto_epoch_steps),
                             _progress(auto_steps, auto_steps, started=auto_steps))
    fit_loop = {
        "state_dict": {},
        "epoch_loop.state_dict": {"_batches_that_stepped": state.batches_that_stepped},
        "epoch_loop.batch_progress": _batch_progress(done, position["total_batches_done"], pending,
                                                     is_last=position["is_last_batch"]),
        "epoch_loop.scheduler_progress": trainer.fit_loop.epoch_loop.scheduler_progress.state_dict(),
        "epoch_loop.automatic_optimization.state_dict": {},
        "epoch_loop.automatic_optimization.optim_progress": {
            "optimizer": {"step": step_counts, "zero_grad": zero_grad_counts},
        },
        "epoch_loop.manual_optimization.state_dict": {},
        "epoch_loop.manual_optimization.optim_step_progress": _both(
            _progress(manual_epoch_steps, manual_epoch_steps), _progress(manual_steps, manual_steps)),
        "epoch_loop.val_loop.state_dict": {},
        "epoch_loop.val_loop.batch_progress": trainer.fit_loop.epoch_loop.val_loop.batch_progress.state_dict(),
        # The fit loop's own counters, exact in the hook that saves (a preemption save fixed its position).
        "epoch_progress": (_both(dict(epochs), dict(epochs)) if trainer.state.save_position is not None
                           else trainer.fit_loop.epoch_progress.state_dict()),
    }
    idle = {"state_dict": {}, "batch_progress": _batch_progress(0, 0, is_last=False)}
    predict = {"state_dict": {}, "batch_progress": _batch_progress(0, 0)}
    return {"fit_loop": fit_loop, "validate_loop": idle, "test_loop": dict(idle), "predict_loop": predict}


def hparams_entries(obj: Any, name_key: str, params_key: str) -> dict[str, Any]:
    """``hparams_name`` and ``hyper_parameters`` (or the datamodule's keys) for ``obj``, as plain data."""
    hparams = getattr(obj, "_hparams", None)
    if not hparams:
        return {}
    out: dict[str, Any] = {}
    if hasattr(obj, "_hparams_name"):
        out[name_key] = obj._hparams_name
    out[params_key] = to_plain(dict(hparams), "hyperparameter")
    return out


def dump(trainer: "Trainer", weights_only: bool = False) -> dict[str, Any]:
    """The checkpoint of the Trainer's current state (see the module docstring for the layout)."""
    module = trainer.lightning_module
    datamodule = trainer.datamodule
    position = position_of(trainer)
    checkpoint: dict[str, Any] = {
        "epoch": trainer.state.epoch,
        "global_step": trainer.state.global_step,
        "pytorch-lightning_version": LIGHTNING_FORMAT_VERSION,
        "state_dict": plain_keys(trainer.strategy.module_state_dict(module)),
        "loops": lightning_loops(trainer, position),
    }
    if not weights_only:
        states = {}
        for cb in trainer.callbacks:
            state = cb.state_dict()
            if state:
                if cb.state_key in states:
                    raise RuntimeError(
                        f"Two callbacks share the checkpoint key {cb.state_key!r}; give one a different state_key "
                        "(Callback.state_key) so that both states can be saved"
                    )
                states[cb.state_key] = plain_numbers(state)
        checkpoint["callbacks"] = states
        # A learning rate or a scheduler's value may be a numpy number (np.logspace(...)[i]): saved as a number.
        checkpoint["optimizer_states"] = [plain_numbers(trainer.strategy.optimizer_state(module, opt))
                                          for opt in trainer.optimizers]
        checkpoint["lr_schedulers"] = [plain_numbers(config.scheduler.state_dict())
                                       for config in trainer.lr_scheduler_configs]
        precision_state = trainer.precision_plugin.state_dict()
        if precision_state:
            checkpoint[type(trainer.precision_plugin).__qualname__] = plain_numbers(precision_state)
    checkpoint.update(hparams_entries(module, module.CHECKPOINT_HYPER_PARAMS_NAME, module.CHECKPOINT_HYPER_PARAMS_KEY))
    if datamodule is not None:
        checkpoint.update(hparams_entries(datamodule, datamodule.CHECKPOINT_HYPER_PARAMS_NAME,
                                          datamodule.CHECKPOINT_HYPER_PARAMS_KEY))
        dm_state = datamodule.state_dict()
        if dm_state:
            checkpoint[type(datamodule).__qualname__] = plain_numbers(dm_state)
    if not weights_only:
        checkpoint[FULMEN_KEY] = plain_numbers(resume_record(trainer, position))
        for cb in trainer.callbacks:
            if overrides(cb, Callback, "on_save_checkpoint"):
                cb.on_save_checkpoint(trainer, module, checkpoint)
    if datamodule is not None and hasattr(datamodule, "on_save_checkpoint"):
        datamodule.on_save_checkpoint(checkpoint)
    previous = module._current_fx_name
    set_hook_name(module, "on_save_checkpoint")
    module.on_save_checkpoint(checkpoint)
    set_hook_name(module, previous)
    check_loadable(checkpoint)  # what the hooks added too: refused here, before any file is touched
    return checkpoint


# ---------------------------------------------------------------------------------------------- loading into a run
def restore_modules(trainer: "Trainer", checkpoint: dict[str, Any], source: str) -> None:
    """Weights (after the module's ``on_load_checkpoint``), datamodule state, then callbacks: Lightning's order."""
    module = trainer.lightning_module
    previous = module._current_fx_name
    set_hook_name(module, "on_load_checkpoint")
    module.on_load_checkpoint(checkpoint)
    set_hook_name(module, previous)
    strict = module.strict_loading if module._strict_loading is not None else True
    load_module_state(module, checkpoint, strict, source, trainer.strategy)
    datamodule = trainer.datamodule
    if datamodule is not None:
        key = type(datamodule).__qualname__
        if key in checkpoint:
            datamodule.load_state_dict(checkpoint[key])
        if hasattr(datamodule, "on_load_checkpoint"):
            datamodule.on_load_checkpoint(checkpoint)
    for cb in trainer.callbacks:
        if overrides(cb, Callback, "on_load_checkpoint"):
            cb.on_load_checkpoint(trainer, module, checkpoint)
    states = checkpoint.get("callbacks") or {}
    for cb in trainer.callbacks:
        state = states.get(cb.state_key)
        if state is None:
            state = states.get(type(cb).__qualname__)  # a key from before the callback had arguments in it
        if state is not None:
            cb.load_state_dict(dict(state))


def restore_training(trainer: "Trainer", checkpoint: dict[str, Any], source: str) -> None:
    """Precision state, optimizers, schedulers, and the loop position (see ``checkpoint/resume.py``)."""
    if isinstance(checkpoint.get(FULMEN_KEY), dict):
        take_own_record(checkpoint[FULMEN_KEY], trainer.global_rank, trainer.world_size)

    if "optimizer_states" not in checkpoint:
        raise KeyError(
            f"Resuming training from {source}, which holds only the weights (saved with weights_only=True or "
            "ModelCheckpoint(save_weights_only=True)); resume from a full checkpoint, or load the weights with "
            "LightningModule.load_from_checkpoint and start a new fit"
        )
    precision = trainer.precision_plugin
    key = type(precision).__qualname__
    if key in checkpoint:
        precision.load_state_dict(checkpoint[key])
    saved = checkpoint["optimizer_states"]
    if len(saved) != len(trainer.optimizers):
        raise RuntimeError(
            f"{source} holds the state of {len(saved)} optimizer(s), but configure_optimizers returned "
            f"{len(trainer.optimizers)}; resume with the same optimizer setup"
        )
    for optimizer, state in zip(trainer.optimizers, saved):
        trainer.strategy.load_optimizer_state(trainer.lightning_module, optimizer, state)
    schedulers = checkpoint.get("lr_schedulers", [])
    if len(schedulers) != len(trainer.lr_scheduler_configs):
        raise RuntimeError(
            f"{source} holds the state of {len(schedulers)} LR scheduler(s), but configure_optimizers returned "
            f"{len(trainer.lr_scheduler_configs)}; resume with the same scheduler setup"
        )
    for config, state in zip(trainer.lr_scheduler_configs, schedulers):
        config.scheduler.load_state_dict(state)
    plan, counters = plan_from_checkpoint(checkpoint)
    state = trainer.state
    for name, value in counters.items():
        if name == "epoch_start_step":
            trainer.state.epoch_step_start = value
        else:
            setattr(state, name, value)
    _restore_loop_counts(trainer, checkpoint, plan)
    if trainer.max_epochs != -1 and state.epoch > trainer.max_epochs:
        raise MisconfigurationException(
            f"{source} was saved at epoch {state.epoch}, beyond Trainer(max_epochs={trainer.max_epochs}); raise "
            "max_epochs to train further"
        )
    record = checkpoint.get(FULMEN_KEY) or {}
    metrics = record.get("callback_metrics")
    if metrics:
        trainer._metrics.callback.update(metrics)
    if plan.mid_epoch or plan.phase == LoopPhase.EPOCH_END:  # the epoch's aggregates so far (between epochs: none)
        trainer._train_store.load_state_dict(record.get("train_metrics") or [], trainer.strategy.root_device,
                                             trainer.lightning_module)
        load_metric_states(trainer.lightning_module, record.get("metric_states") or {})
    grads = record.get("grads")
    if grads:
        for name, param in trainer.lightning_module.named_parameters():
            if name in grads:
                grad = grads[name].to(param.device, param.dtype)
                sharded = hasattr(param, "placements")  # a DTensor: the saved gradient is this rank's shard
                if grad.shape != (param.to_local() if sharded else param).shape:
                    continue  # saved by another number of processes (resuming inexactly, as warned)
                if sharded:
                    from torch.distributed.tensor import DTensor

                    grad = DTensor.from_local(grad, param.device_mesh, param.placements)
                param.grad = grad
    trainer.state.resume_plan = plan


def _restore_loop_counts(trainer: "Trainer", checkpoint: dict[str, Any], plan: Any) -> None:
    """Where the checkpoint's epoch counts started (the loop objects' ``current`` counters), and the scheduler
    steps, from Lightning's ``loops`` entry (fulmen writes it too)."""
    state = trainer.state
    fit_loop = (checkpoint.get("loops") or {}).get("fit_loop") or {}

    def completed(key: str, part: str, *path: str) -> Optional[int]:
        entry = fit_loop.get(key, {})
        for name in path:
            entry = entry.get(name, {}) if isinstance(entry, dict) else {}
        value = entry.get(part, {}).get("completed") if isinstance(entry, dict) else None
        return int(value) if value is not None else None

    batches = completed("epoch_loop.batch_progress", "current")
    state.is_last_batch = bool(fit_loop.get("epoch_loop.batch_progress", {}).get("is_last_batch", False))
    done = batches if batches is not None and plan.phase != LoopPhase.BETWEEN_EPOCHS else plan.batches_done
    state.epoch_batches_start = state.total_batch_idx - done
    steps = completed("epoch_loop.automatic_optimization.optim_progress", "current", "optimizer", "step")
    state.epoch_step_start = state.global_step - steps if steps else trainer.state.epoch_step_start
    val = fit_loop.get("epoch_loop.val_loop.batch_progress", {})
    if isinstance(val, dict) and "total" in val:
        counts = state.eval_counts["fit_validation"]
        counts.total_done, counts.run_done = int(val["total"]["completed"]), int(val["current"]["completed"])
        counts.is_last = bool(val.get("is_last_batch", False))
    schedulers, epoch_schedulers = (completed("epoch_loop.scheduler_progress", part) for part in ("total", "current"))
    if schedulers is not None and epoch_schedulers is not None:
        state.scheduler_steps, state.epoch_scheduler_start = schedulers, schedulers - epoch_schedulers

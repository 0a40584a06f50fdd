"""The same hook-recording model and callback, built on fulmen or on pytorch_lightning.

Every hook is overridden to append ``(name, args)`` in call-entry order and then run the base implementation, so
the recorded sequences of the two frameworks can be compared item by item.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch

MODULE_HOOKS = (
    "configure_callbacks", "prepare_data", "setup", "teardown", "configure_model", "configure_optimizers",
    "on_fit_start", "on_fit_end", "on_train_start", "on_train_end", "on_validation_start", "on_validation_end",
    "on_test_start", "on_test_end", "on_predict_start", "on_predict_end",
    "on_train_batch_start", "on_train_batch_end", "on_validation_batch_start", "on_validation_batch_end",
    "on_test_batch_start", "on_test_batch_end", "on_predict_batch_start", "on_predict_batch_end",
    "on_train_epoch_start", "on_train_epoch_end", "on_validation_epoch_start", "on_validation_epoch_end",
    "on_test_epoch_start", "on_test_epoch_end", "on_predict_epoch_start", "on_predict_epoch_end",
    "on_before_zero_grad", "on_before_backward", "on_after_backward", "on_before_optimizer_step",
    "on_validation_model_zero_grad", "on_validation_model_eval", "on_validation_model_train",
    "on_test_model_eval", "on_test_model_train", "on_predict_model_eval",
    "training_step", "validation_step", "test_step", "predict_step",
    "train_dataloader", "val_dataloader", "test_dataloader", "predict_dataloader",
    "on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer",
    "backward", "optimizer_step", "optimizer_zero_grad", "configure_gradient_clipping", "clip_gradients",
    "lr_scheduler_step", "manual_backward",
)

CALLBACK_HOOKS = (
    "setup", "teardown", "on_fit_start", "on_fit_end", "on_sanity_check_start", "on_sanity_check_end",
    "on_train_batch_start", "on_train_batch_end", "on_train_epoch_start", "on_train_epoch_end",
    "on_validation_epoch_start", "on_validation_epoch_end", "on_test_epoch_start", "on_test_epoch_end",
    "on_predict_epoch_start", "on_predict_epoch_end", "on_validation_batch_start", "on_validation_batch_end",
    "on_test_batch_start", "on_test_batch_end", "on_predict_batch_start", "on_predict_batch_end",
    "on_train_start", "on_train_end", "on_validation_start", "on_validation_end", "on_test_start", "on_test_end",
    "on_predict_start", "on_predict_end", "on_exception", "on_before_backward", "on_after_backward",
    "on_before_optimizer_step", "on_before_zero_grad",
)


def summarize(value: Any) -> Any:
    """A comparable stand-in for a hook argument."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        return getattr(value, "value", value)  # str enums (TrainerFn.FITTING) compare by value
    if isinstance(value, torch.Tensor):
        return "Tensor"
    if isinstance(value, dict):
        return ("dict", tuple(sorted(value)))
    if isinstance(value, torch.optim.Optimizer) or hasattr(value, "param_groups"):
        return "optimizer"
    if callable(value):
        return "callable"
    return type(value).__name__


def load(framework: str) -> Any:
    if framework == "fulmen":
        import fulmen
        import fulmen.demos.boring_classes as demos

        return fulmen, demos
    pl = importlib.import_module("pytorch_lightning")
    demos = importlib.import_module("pytorch_lightning.demos.boring_classes")
    return pl, demos


def _recording(name: str, prefix: str, skip_trainer_args: int):
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        shown = args[skip_trainer_args:]
        entry = (prefix + name, tuple(summarize(a) for a in shown),
                 tuple(sorted((k, summarize(v)) for k, v in kwargs.items())))
        self._calls.append(entry)
        return getattr(super(type(self), self), name)(*args, **kwargs)

    method.__name__ = name
    return method


def hooked_classes(framework: str, base_model: str = "BoringModel", record_module: bool = True):
    """(model class, callback class), each appending to a shared ``calls`` list."""
    pl, demos = load(framework)
    calls: list[Any] = []
    model_base = getattr(demos, base_model)
    body = {"_calls": calls}
    if record_module:
        for name in MODULE_HOOKS:
            if hasattr(model_base, name):
                body[name] = _recording(name, "", 0)
    Model = type("HookedModel", (model_base,), body)
    cb_body = {"_calls": calls}
    for name in CALLBACK_HOOKS:
        cb_body[name] = _recording(name, "Callback.", 2)
    HookedCallback = type("HookedCallback", (pl.Callback,), cb_body)
    return pl, Model, HookedCallback, calls


def quiet_trainer(pl: Any, **kwargs: Any) -> Any:
    defaults = dict(logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    defaults.update(kwargs)
    return pl.Trainer(**defaults)

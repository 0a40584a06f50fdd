"""The hook catalogue and the precomputed dispatch the loops call.

Every hook a callback may implement is listed in ``CALLBACK_HOOKS``; ``LOG_OPTIONS`` says where ``self.log`` may be
called and with which defaults. At the start of each run ``Hooks`` finds, once, which callbacks and which module
methods override each hook, so that in the loop ``hooks.on_train_batch_start(batch, i)`` calls exactly those, by
attribute, in Lightning's order: callbacks first, then the module.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, NamedTuple, Optional

# Hooks a Callback may implement, in the order they first happen in a fit.
CALLBACK_HOOKS = (
    "setup", "on_fit_start", "on_sanity_check_start", "on_sanity_check_end",
    "on_train_start", "on_train_epoch_start", "on_train_batch_start",
    "on_before_zero_grad", "on_before_backward", "on_after_backward", "on_before_optimizer_step",
    "on_train_batch_end", "on_train_epoch_end", "on_train_end",
    "on_validation_start", "on_validation_epoch_start", "on_validation_batch_start", "on_validation_batch_end",
    "on_validation_epoch_end", "on_validation_end",
    "on_test_start", "on_test_epoch_start", "on_test_batch_start", "on_test_batch_end", "on_test_epoch_end",
    "on_test_end",
    "on_predict_start", "on_predict_epoch_start", "on_predict_batch_start", "on_predict_batch_end",
    "on_predict_epoch_end", "on_predict_end",
    "on_save_checkpoint", "on_load_checkpoint", "on_exception", "on_fit_end", "teardown",
)

# Module hooks with no callback twin, called only when the module overrides them (their defaults do nothing
# observable) -- except those in MODULE_HOOKS_WITH_DEFAULTS, whose default behaviour is part of the contract.
MODULE_ONLY_HOOKS = (
    "on_validation_model_zero_grad", "on_validation_model_eval", "on_validation_model_train",
    "on_test_model_eval", "on_test_model_train", "on_predict_model_eval",
)
MODULE_HOOKS_WITH_DEFAULTS = frozenset(
    {"on_validation_model_zero_grad", "on_validation_model_eval", "on_test_model_eval", "on_predict_model_eval"}
)


class LogOptions(NamedTuple):
    """Where ``self.log`` may be called: the allowed and default values of ``on_step`` and ``on_epoch``."""

    allowed_on_step: tuple[bool, ...]
    allowed_on_epoch: tuple[bool, ...]
    default_on_step: bool
    default_on_epoch: bool


_STEP = LogOptions((False, True), (False, True), True, False)
_EVAL_STEP = LogOptions((False, True), (False, True), False, True)
_EPOCH_ONLY = LogOptions((False,), (True,), False, True)

# Hooks absent from this table (or mapped to None) may not log: predict, setup/teardown, configure_*, the
# *_dataloader and batch-transfer hooks, checkpoint hooks, lr_scheduler_step, the *_end of fit/train/eval stages.
LOG_OPTIONS: dict[str, Optional[LogOptions]] = {
    **dict.fromkeys(
        ("training_step", "on_train_batch_start", "on_train_batch_end", "on_before_backward", "backward",
         "on_after_backward", "on_before_optimizer_step", "optimizer_step", "configure_gradient_clipping",
         "clip_gradients", "on_before_zero_grad", "optimizer_zero_grad"),
        _STEP,
    ),
    **dict.fromkeys(
        ("validation_step", "test_step", "on_validation_batch_start", "on_validation_batch_end",
         "on_test_batch_start", "on_test_batch_end"),
        _EVAL_STEP,
    ),
    **dict.fromkeys(
        ("on_train_start", "on_validation_start", "on_test_start", "on_train_epoch_start", "on_train_epoch_end",
         "on_validation_epoch_start", "on_validation_epoch_end", "on_test_epoch_start", "on_test_epoch_end"),
        _EPOCH_ONLY,
    ),
}


def overrides(obj: Any, base: type, name: str) -> bool:
    """Whether ``type(obj)`` (or the instance itself) defines ``name`` differently from ``base``."""
    if name in getattr(obj, "__dict__", {}):  # patched on the instance
        return True
    return getattr(type(obj), name, None) is not getattr(base, name, None)


def set_hook_name(module: Any, name: Optional[str]) -> None:
    """Record which hook runs now, for ``self.log``.

    ``nn.Module.__setattr__`` costs about 1.5 us (it looks for parameters, buffers and submodules); the name is a
    plain string, so it is stored directly, at a tenth of that, as it happens on every step.
    """
    object.__setattr__(module, "_current_fx_name", name)


def _noop(*args: Any, **kwargs: Any) -> None:
    return None


class HookGroup:
    """One hook, bound for a run: the overriding callbacks, then the module method, then the late callbacks.

    ``late`` holds the monitoring callbacks (checkpointing, early stopping) at ``on_train_epoch_end``: they run after
    the module's own ``on_train_epoch_end`` so that they see the metrics it logs there.
    """

    __slots__ = ("name", "trainer", "module", "callbacks", "module_fn", "late")

    def __init__(self, name: str, trainer: Any, module: Any, callbacks: list[Callable[..., Any]],
                 module_fn: Optional[Callable[..., Any]], late: list[Callable[..., Any]]) -> None:
        self.name = name
        self.trainer = trainer
        self.module = module
        self.callbacks = callbacks
        self.module_fn = module_fn
        self.late = late

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        module = self.module
        previous = module._current_fx_name  # hooks nest (a closure inside optimizer_step); restore the caller's name
        set_hook_name(module, self.name)
        try:
            for fn in self.callbacks:
                fn(self.trainer, module, *args, **kwargs)
            out = self.module_fn(*args, **kwargs) if self.module_fn is not None else None
            for fn in self.late:
                fn(self.trainer, module, *args, **kwargs)
        finally:
            set_hook_name(module, previous)
        return out


class EvalHooks(NamedTuple):
    """The hooks of one evaluation stage (validation or test), named once so the loop needs no strings."""

    model_eval: Callable[..., Any]
    start: Callable[..., Any]
    epoch_start: Callable[..., Any]
    batch_start: Callable[..., Any]
    batch_end: Callable[..., Any]
    epoch_end: Callable[..., Any]
    end: Callable[..., Any]
    model_train: Callable[..., Any]


class Hooks:
    """The hooks of one run, as attributes: ``hooks.on_train_batch_end(outputs, batch, batch_idx)``.

    A hook that nothing overrides is a no-op function, so calling it costs next to nothing in the loop.
    """

    def __init__(self, trainer: Any, module: Any, callbacks: list[Any], profiler: Any = None) -> None:
        from fulmen.callbacks.callback import Callback
        from fulmen.module import LightningModule

        if profiler is not None:
            from fulmen.profilers import profiled

        for name in CALLBACK_HOOKS + MODULE_ONLY_HOOKS:
            early, late = [], []
            for cb in callbacks:
                if hasattr(Callback, name) and overrides(cb, Callback, name):
                    runs_late = name == "on_train_epoch_end" and getattr(cb, "_runs_after_module_epoch_end", False)
                    fn = getattr(cb, name)
                    if profiler is not None:
                        fn = profiled(profiler, f"[Callback]{cb.state_key}.{name}", fn)
                    (late if runs_late else early).append(fn)
            module_fn = None
            if hasattr(LightningModule, name) and (
                name in MODULE_HOOKS_WITH_DEFAULTS or overrides(module, LightningModule, name)
            ):
                module_fn = getattr(module, name)
                if profiler is not None:
                    module_fn = profiled(profiler, f"[LightningModule]{type(module).__name__}.{name}", module_fn)
            if early or late or module_fn is not None:
                setattr(self, name, HookGroup(name, trainer, module, early, module_fn, late))
            else:
                setattr(self, name, _noop)
        self.validation = EvalHooks(
            self.on_validation_model_eval, self.on_validation_start, self.on_validation_epoch_start,
            self.on_validation_batch_start, self.on_validation_batch_end, self.on_validation_epoch_end,
            self.on_validation_end, self.on_validation_model_train,
        )
        self.test = EvalHooks(
            self.on_test_model_eval, self.on_test_start, self.on_test_epoch_start, self.on_test_batch_start,
            self.on_test_batch_end, self.on_test_epoch_end, self.on_test_end, self.on_test_model_train,
        )


def positional_count(fn: Callable[..., Any]) -> int:
    """How many positional arguments a bound method takes (99 for ``*args``), read off its code object, which is
    far cheaper than ``inspect.signature`` (this runs at every fit)."""
    code = getattr(getattr(fn, "__func__", fn), "__code__", None)
    if code is None:
        try:
            params = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):
            return 99
        if any(p.kind == p.VAR_POSITIONAL for p in params):
            return 99
        return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
    if code.co_flags & inspect.CO_VARARGS:
        return 99
    return code.co_argcount - (1 if hasattr(fn, "__self__") else 0)


def takes_varargs(fn: Callable[..., Any]) -> bool:
    return any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in inspect.signature(fn).parameters.values())

"""The hook dispatch of one run: which callbacks and module methods implement each hook, found once.

At the start of each run ``Hooks`` finds which callbacks and which module methods override each hook (the catalogue
is ``fulmen.core.hooks``), so that in the loop ``hooks.on_train_batch_start(batch, i)`` calls exactly those, by
attribute, in Lightning's order: callbacks first, then the module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Optional

from fulmen.core.hooks import CALLBACK_HOOKS, MODULE_HOOKS_WITH_DEFAULTS, MODULE_ONLY_HOOKS, overrides, set_hook_name

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer


Hook = Callable[..., Any]


def _noop(*args: Any, **kwargs: Any) -> None:
    return None


class HookGroup:
    """One hook, bound for a run: the overriding callbacks, then the module method, then the late callbacks.

    ``late`` holds the monitoring callbacks (checkpointing, early stopping) at ``on_train_epoch_end``: they run after
    the module's own ``on_train_epoch_end`` so that they see the metrics it logs there.
    """

    __slots__ = ("name", "trainer", "module", "callbacks", "module_fn", "late")

    def __init__(self, name: str, trainer: "Trainer", module: Any, callbacks: list[Callable[..., Any]],
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

    A hook that nothing overrides is a no-op function, so calling it costs next to nothing in the loop. Every hook of
    the catalogue (``CALLBACK_HOOKS`` and ``MODULE_ONLY_HOOKS`` of ``fulmen.core.hooks``) is declared here, so that
    editors and type checkers see them; ``validation`` and ``test`` name one evaluation stage's hooks.
    """

    setup: Hook
    on_fit_start: Hook
    on_sanity_check_start: Hook
    on_sanity_check_end: Hook
    on_train_start: Hook
    on_train_epoch_start: Hook
    on_train_batch_start: Hook
    on_before_zero_grad: Hook
    on_before_backward: Hook
    on_after_backward: Hook
    on_before_optimizer_step: Hook
    on_train_batch_end: Hook
    on_train_epoch_end: Hook
    on_train_end: Hook
    on_validation_start: Hook
    on_validation_epoch_start: Hook
    on_validation_batch_start: Hook
    on_validation_batch_end: Hook
    on_validation_epoch_end: Hook
    on_validation_end: Hook
    on_test_start: Hook
    on_test_epoch_start: Hook
    on_test_batch_start: Hook
    on_test_batch_end: Hook
    on_test_epoch_end: Hook
    on_test_end: Hook
    on_predict_start: Hook
    on_predict_epoch_start: Hook
    on_predict_batch_start: Hook
    on_predict_batch_end: Hook
    on_predict_epoch_end: Hook
    on_predict_end: Hook
    on_save_checkpoint: Hook
    on_load_checkpoint: Hook
    on_exception: Hook
    on_fit_end: Hook
    teardown: Hook
    on_validation_model_zero_grad: Hook
    on_validation_model_eval: Hook
    on_validation_model_train: Hook
    on_test_model_eval: Hook
    on_test_model_train: Hook
    on_predict_model_eval: Hook
    validation: EvalHooks
    test: EvalHooks

    def __init__(self, trainer: "Trainer", module: Any, callbacks: list[Any], profiler: Any = None) -> None:
        from fulmen.callbacks.callback import Callback
        from fulmen.core.module import LightningModule

        if profiler is not None:
            from fulmen.profilers import profiled

        for name in CALLBACK_HOOKS + MODULE_ONLY_HOOKS:
            early: list[Hook] = []
            late: list[Hook] = []
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

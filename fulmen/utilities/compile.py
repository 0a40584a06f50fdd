"""torch.compile and LightningModules: a compiled module given to the Trainer, and ``Trainer(compile=...)``. (State-dict
keys without the ``_orig_mod.`` that compiled submodules add are ``core/saving.py``'s ``plain_keys``.)"""

from __future__ import annotations

import sys
from typing import Any, Optional

import torch

from fulmen.core.module import LightningModule

_STEPS = ("forward", "training_step", "validation_step", "test_step", "predict_step")


def is_compiled(model: Any) -> bool:
    """Whether ``model`` is what ``torch.compile(module)`` returns."""
    # Without torch._dynamo loaded nothing was compiled; checking this way keeps its import (a second) off every run.
    eval_frame = sys.modules.get("torch._dynamo.eval_frame")
    return eval_frame is not None and isinstance(model, eval_frame.OptimizedModule)


def from_compiled(model: Any) -> Any:
    """The LightningModule inside ``torch.compile(module)``, with its forward and step methods compiled the same
    way (as Lightning's ``from_compiled``): the Trainer runs the module itself, so its hooks, ``self.log`` and its
    state dict stay as they are."""
    module = model._orig_mod
    if not isinstance(module, LightningModule):
        raise TypeError(f"The Trainer got torch.compile({type(module).__name__}); compile a fulmen LightningModule, "
                        "or compile a submodule inside it (in __init__ or configure_model)")
    compile_steps(module, model.dynamo_ctx, names=_STEPS)
    return module


def compile_steps(module: Any, compiler: Any, names: tuple[str, ...] = ("forward",)) -> None:
    """Replace each method in ``names`` of ``module`` by ``compiler(method)``, keeping the originals for
    ``to_uncompiled``; a module already compiled this way is left alone."""
    if getattr(module, "_compiler_ctx", None) is not None:
        return
    originals = {name: getattr(module, name) for name in names}
    for name, method in originals.items():
        object.__setattr__(module, name, compiler(method))
    object.__setattr__(module, "_compiler_ctx", originals)


def compile_forward(module: Any, options: Optional[dict[str, Any]] = None) -> None:
    """``Trainer(compile=...)``: compile ``module.forward`` with ``torch.compile(**options)``."""
    options = dict(options or {})
    compile_steps(module, lambda method: torch.compile(method, **options))


def to_uncompiled(model: Any) -> Any:
    """Undo ``from_compiled`` / ``Trainer(compile=...)`` (or unwrap ``torch.compile(module)``): the plain module."""
    if is_compiled(model):
        model = model._orig_mod
    originals = getattr(model, "_compiler_ctx", None)
    if originals is not None:
        for name in originals:
            model.__dict__.pop(name, None)  # the class's method shows again
        object.__setattr__(model, "_compiler_ctx", None)
    return model

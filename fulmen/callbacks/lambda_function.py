"""LambdaCallback: a callback made of plain functions, one per hook."""

from __future__ import annotations

from typing import Any, Callable

from fulmen.callbacks.callback import Callback


def _hook_names() -> tuple[str, ...]:
    return tuple(n for n, v in vars(Callback).items()
                 if callable(v) and not n.startswith("_") and n not in ("state_dict", "load_state_dict"))


class LambdaCallback(Callback):
    """``LambdaCallback(on_train_epoch_end=fn, ...)``: each given function runs as that hook, with the hook's
    arguments (``fn(trainer, pl_module, ...)``)."""

    def __init__(self, **hooks: Callable[..., Any]) -> None:
        known = _hook_names()
        for name, fn in hooks.items():
            if name not in known:
                raise TypeError(f"LambdaCallback got {name}=..., which is not a callback hook; hooks: "
                                f"{', '.join(sorted(known))}")
            if fn is not None:
                if not callable(fn):
                    raise TypeError(f"LambdaCallback({name}={fn!r}) must be a function")
                setattr(self, name, fn)

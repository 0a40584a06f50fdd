"""Trainer arguments from the environment: ``PL_TRAINER_<ARGNAME>`` variables give defaults, as in Lightning."""

from __future__ import annotations

import ast
import functools
import inspect
import os
from typing import Any, Callable, TypeVar, cast

_F = TypeVar("_F", bound=Callable[..., Any])


def _defaults_from_env_vars(init: _F) -> _F:
    """``PL_TRAINER_<ARG>`` environment variables give defaults (parsed as Python literals); explicit kwargs win."""

    names = [name for name in inspect.signature(init).parameters if name != "self"]

    @functools.wraps(init)
    def wrapped(self: Any, *args: Any, **kwargs: Any) -> None:
        if args:
            raise TypeError("Trainer arguments are keyword-only: write Trainer(max_epochs=5), not Trainer(5)")
        for name in names:
            env = os.environ.get(f"PL_TRAINER_{name.upper()}")
            if env is not None and name not in kwargs:
                try:
                    kwargs[name] = ast.literal_eval(env)
                except (ValueError, SyntaxError):
                    kwargs[name] = env
        init(self, **kwargs)

    return cast(_F, wrapped)

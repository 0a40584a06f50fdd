"""Reading a hook's signature."""

from __future__ import annotations

import inspect
from typing import Callable, Optional


def is_param_in_hook_signature(hook_fx: Callable, param: str, explicit: bool = False,
                               min_args: Optional[int] = None) -> bool:
    """Whether ``hook_fx`` takes ``param``: named in its signature, or (unless ``explicit``) absorbed by ``*args``;
    with ``min_args``, also true when it takes at least that many positional arguments."""
    parameters = inspect.getfullargspec(hook_fx)
    args = parameters.args[1:] if inspect.ismethod(hook_fx) else parameters.args
    return (param in args or (not explicit and parameters.varargs is not None)
            or (isinstance(min_args, int) and len(args) >= min_args))

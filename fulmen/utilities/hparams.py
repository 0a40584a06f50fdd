"""``save_hyperparameters``: read a constructor's arguments off the call stack.

This is the one place in fulmen that inspects frames. It is kept here, alone, with tests for the cases that
break elsewhere: nested classes, subclasses whose ``__init__`` is decorated, mixins, and ``**kwargs``.
"""

from __future__ import annotations

import copy
import inspect
from argparse import Namespace
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from types import FrameType
from typing import Any, Optional, Union

from fulmen.utilities.rank_zero import rank_zero_warn


class AttributeDict(dict):
    """A dict whose keys can also be read and written as attributes: ``hparams.lr`` is ``hparams["lr"]``."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError as err:
            raise AttributeError(f"'AttributeDict' has no attribute {key!r}") from err

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def __delattr__(self, key: str) -> None:
        try:
            del self[key]
        except KeyError as err:
            raise AttributeError(key) from err

    def __repr__(self) -> str:
        if not self:
            return ""
        width = max(len(str(k)) for k in self)
        return "\n".join(f'"{k}":{" " * (width - len(str(k)) + 1)}{v!r}' for k, v in sorted(self.items(), key=str))


# What the CLI parsed for the module it is building (see ``given_hyperparameters``), or None.
_given: ContextVar[Optional[dict[str, Any]]] = ContextVar("fulmen_given_hyperparameters", default=None)


@contextmanager
def given_hyperparameters(hparams: Mapping[str, Any], instantiator: str) -> Iterator[None]:
    """While a class is built inside this block, its ``save_hyperparameters()`` saves ``hparams`` (the parsed
    config) instead of the ``__init__`` arguments, with ``_instantiator`` naming the function that can build it
    again from them: a module whose arguments are objects (an encoder, an optimizer factory) then reloads from
    its checkpoint with ``load_from_checkpoint``."""
    token = _given.set({**hparams, "_instantiator": instantiator})
    try:
        yield
    finally:
        _given.reset(token)


def _mentions(obj: Any, local_vars: Mapping[str, Any]) -> bool:
    # A decorator's wrapper frame holds the instance in ``args[0]`` or under another name.
    for value in local_vars.values():
        if value is obj:
            return True
        if isinstance(value, tuple) and value and value[0] is obj:
            return True
    return False


def frame_args(frame: FrameType) -> dict[str, Any]:
    """The arguments of the function running in ``frame``, with ``**kwargs`` merged in and ``*args`` left out."""
    code = frame.f_code
    local_vars = frame.f_locals
    n = code.co_argcount + code.co_kwonlyargcount
    names = list(code.co_varnames[:n])[1:]  # drop self
    args = {name: local_vars[name] for name in names if name in local_vars}
    flags = code.co_flags
    index = n
    if flags & inspect.CO_VARARGS:
        index += 1
    if flags & inspect.CO_VARKEYWORDS:
        extra = local_vars.get(code.co_varnames[index], {})
        if isinstance(extra, Mapping):
            args.update(extra)
    return args


def init_args_on_stack(obj: Any, frame: Optional[FrameType]) -> dict[str, Any]:
    """Merge the arguments of every ``__init__`` of ``obj`` on the stack, starting at ``frame``.

    The stack holds the innermost (parent class) ``__init__`` first; the outer subclass ``__init__`` frames follow,
    and their values win, as a subclass's own arguments describe the object best.
    """
    found: list[dict[str, Any]] = []
    while frame is not None:
        local_vars = frame.f_locals
        if frame.f_code.co_name == "__init__" and local_vars.get("self") is obj:
            found.append(frame_args(frame))
        elif not _mentions(obj, local_vars):
            break
        frame = frame.f_back
    merged: dict[str, Any] = {}
    for args in found:
        merged.update(args)
    return merged


def save_hyperparameters(
    obj: Any,
    *args: Any,
    ignore: Optional[Union[Sequence[str], str]] = None,
    frame: Optional[FrameType] = None,
    given_hparams: Optional[dict[str, Any]] = None,
) -> None:
    """Fill ``obj._hparams`` and ``obj._hparams_initial`` (see ``LightningModule.save_hyperparameters``).

    ``frame`` is the frame of the ``__init__`` that called ``save_hyperparameters``; ``given_hparams``, when set,
    stands for the ``__init__`` arguments (nothing is read off the stack).
    """
    if isinstance(ignore, str):
        ignore = [ignore]
    ignore = [name for name in (ignore or []) if isinstance(name, str)]

    given = given_hparams if given_hparams is not None else _given.get()
    if given is not None:
        init_args = dict(given)
    else:
        init_args = init_args_on_stack(obj, frame) if frame is not None else {}
    name: Optional[str] = None
    if not args:
        hp: Any = {k: v for k, v in init_args.items() if k not in ignore}
        name = "kwargs" if hp else None
    elif len(args) == 1 and not isinstance(args[0], str):
        hp = args[0]
        # Lightning names the hparams after the init argument that held them, if any.
        name = next((k for k, v in init_args.items() if v is hp), None)
    else:
        names = [a for a in args if a not in ignore]
        missing = [a for a in names if not isinstance(a, str) or a not in init_args]
        if missing:
            raise ValueError(
                f"save_hyperparameters{tuple(args)!r}: {missing} are not arguments of __init__; pass the names of "
                f"__init__ arguments (available: {sorted(init_args)}) or a dict"
            )
        hp = {a: init_args[a] for a in names}
        name = "kwargs"

    if isinstance(hp, Namespace):
        hp = vars(hp)
    elif not isinstance(hp, Mapping):
        # OmegaConf DictConfig and other mapping-likes convert themselves to plain containers.
        to_container = getattr(type(hp), "to_container", None)
        if to_container is not None:
            hp = to_container(hp, resolve=True)
        else:
            raise TypeError(
                f"save_hyperparameters got {type(hp).__name__}; pass nothing (to save the __init__ arguments), "
                "argument names, a dict, a Namespace or an OmegaConf config"
            )
    hp = {k: v for k, v in hp.items() if k not in ignore}
    import torch.nn

    for key, value in hp.items():
        if isinstance(value, torch.nn.Module):
            rank_zero_warn(
                f"hyperparameter {key!r} is an nn.Module, whose weights are already saved in the state_dict; "
                f"pass save_hyperparameters(ignore=[{key!r}]) to leave it out"
            )
    obj._hparams_name = name
    obj._hparams = AttributeDict(hp)
    try:
        obj._hparams_initial = copy.deepcopy(obj._hparams)
    except Exception:  # an hparam that cannot be copied keeps its reference, as a deepcopy is only a snapshot
        obj._hparams_initial = AttributeDict(copy.copy(hp))

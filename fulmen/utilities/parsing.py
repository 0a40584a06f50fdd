"""Finding a hyperparameter by name where Lightning looks for it (an attribute of the module, a key of its
``hparams``, then the same on the datamodule: the Tuner reads and sets ``lr`` and ``batch_size`` this way), and
Lightning's helpers for the arguments of ``__init__``. Reading them off the call stack is
``fulmen.utilities.hparams``'s job; these are the public names for it."""

from __future__ import annotations

import inspect
import pickle
from collections.abc import MutableMapping
from types import FrameType
from typing import Any, Optional

from fulmen.utilities.hparams import AttributeDict, frame_args, save_hyperparameters

__all__ = ["AttributeDict", "clean_namespace", "collect_init_args", "get_init_args", "is_picklable",
           "lightning_getattr", "lightning_hasattr", "lightning_setattr", "parse_class_init_keys",
           "save_hyperparameters"]


def is_picklable(obj: object) -> bool:
    """Whether ``pickle.dumps(obj)`` succeeds."""
    try:
        pickle.dumps(obj)
    except (pickle.PicklingError, AttributeError, TypeError):
        return False
    return True


def clean_namespace(hparams: MutableMapping) -> None:
    """Remove, in place, the entries whose values cannot be pickled."""
    for key in [k for k, v in hparams.items() if not is_picklable(v)]:
        del hparams[key]


def parse_class_init_keys(cls: type) -> tuple[str, Optional[str], Optional[str]]:
    """The names of ``cls.__init__``'s first parameter (``self``), of its ``*args`` and of its ``**kwargs`` (None
    where it has none)."""
    params = list(inspect.signature(cls.__init__).parameters.values())  # type: ignore[misc]
    star = next((p.name for p in params if p.kind == p.VAR_POSITIONAL), None)
    double_star = next((p.name for p in params if p.kind == p.VAR_KEYWORD), None)
    return params[0].name, star, double_star


def get_init_args(frame: FrameType) -> dict[str, Any]:
    """The arguments of the ``__init__`` running in ``frame`` (``**kwargs`` merged in, ``*args`` and ``self`` left
    out); empty when ``frame`` is not an ``__init__`` of a class."""
    if frame.f_code.co_name != "__init__" or "__class__" not in frame.f_locals:
        return {}
    return frame_args(frame)


def collect_init_args(frame: FrameType, path_args: list[dict[str, Any]], inside: bool = False,
                      classes: tuple[type, ...] = ()) -> list[dict[str, Any]]:
    """Append to ``path_args`` the arguments of the chain of ``__init__`` calls found from ``frame`` outwards (a
    subclass's ``__init__`` calling its parents'), innermost first, so the last entry is the most specific class's.

    Frames before the chain are skipped unless ``inside`` (already in a chain); only ``__init__`` frames whose
    ``self`` is an instance of ``classes`` (any, when empty) count. Returns ``path_args``.
    """
    while frame is not None and frame.f_back is not None:
        local_vars = frame.f_locals
        is_init = frame.f_code.co_name == "__init__" and "__class__" in local_vars
        if is_init and (not classes or isinstance(local_vars.get("self"), classes)):
            path_args.append(get_init_args(frame))
            inside = True
        elif inside:
            break
        frame = frame.f_back
    return path_args


def _owners(model: Any, name: str) -> list[Any]:
    """The objects holding ``name``: the module and its hparams first, then the datamodule and its hparams."""
    found = []
    datamodule = getattr(getattr(model, "_trainer", None), "datamodule", None)
    for owner in (model, datamodule):
        if owner is None:
            continue
        if name in owner.__dict__ or hasattr(type(owner), name):
            found.append(owner)
        hparams = getattr(owner, "_hparams", None)
        if hparams is not None and name in hparams:
            found.append(hparams)
    return found


def lightning_hasattr(model: Any, name: str) -> bool:
    """Whether ``name`` is an attribute or hyperparameter of the module (or of its datamodule)."""
    return bool(_owners(model, name))


def lightning_getattr(model: Any, name: str) -> Any:
    """The value of ``name`` (the first place it is found); AttributeError naming the places looked at."""
    owners = _owners(model, name)
    if not owners:
        raise AttributeError(f"{name!r} is neither an attribute nor a hyperparameter of {type(model).__name__} or of "
                             "its datamodule")
    owner = owners[0]
    return owner[name] if isinstance(owner, dict) else getattr(owner, name)


def lightning_setattr(model: Any, name: str, value: Any) -> None:
    """Set ``name`` to ``value`` everywhere it is found (the attribute and the hyperparameter alike)."""
    owners = _owners(model, name)
    if not owners:
        raise AttributeError(f"{name!r} is neither an attribute nor a hyperparameter of {type(model).__name__} or of "
                             "its datamodule")
    for owner in owners:
        if isinstance(owner, dict):
            owner[name] = value
        else:
            setattr(owner, name, value)


def first_found(model: Any, names: tuple[str, ...], given: Optional[str] = None) -> str:
    """``given`` if set (it must exist), else the first of ``names`` that exists; AttributeError naming them."""
    if given:
        if not lightning_hasattr(model, given):
            raise AttributeError(f"{type(model).__name__} has no attribute or hyperparameter {given!r}")
        return given
    for name in names:
        if lightning_hasattr(model, name):
            return name
    raise AttributeError(f"{type(model).__name__} has none of {list(names)} as an attribute or hyperparameter; add "
                         "one, or name yours with attr_name=")

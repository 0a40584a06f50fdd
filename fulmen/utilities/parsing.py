"""Finding a hyperparameter by name where Lightning looks for it: an attribute of the module, a key of its
``hparams``, then the same on the datamodule (the Tuner reads and sets ``lr`` and ``batch_size`` this way)."""

from __future__ import annotations

from typing import Any, Optional


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

"""Named classes with the arguments to build them: what ``AcceleratorRegistry`` and ``StrategyRegistry`` are."""

from __future__ import annotations

import importlib
from typing import Any, Callable, Optional, Union
from typing_extensions import override

from fulmen.utilities.exceptions import MisconfigurationException


class _Registry(dict):
    """``name -> {"<kind>": class, "<kind>_name": name, "description": str, "init_params": dict}``.

    ``register(name, cls, description, **init_params)`` (or ``@register(name, ...)`` on a class) adds one;
    ``get(name)`` builds ``cls(**init_params)``. A class may be registered by its import path
    ("package.module:Class"), imported only when the entry is read: the built-in strategies are registered so, to
    keep ``import fulmen`` from importing them all.
    """

    kind = "object"

    def register(self, name: str, cls: Optional[Union[Callable[..., Any], str]] = None, description: str = "",
                 override: bool = False, **init_params: Any) -> Callable[..., Any]:
        """Register ``cls`` under ``name``; without ``cls``, return a class decorator that does."""
        if not isinstance(name, str):
            raise TypeError(f"{type(self).__name__[1:]}.register(name={name!r}): the name must be a str")
        if name in self and not override:
            raise MisconfigurationException(f"{name!r} is already registered as a {self.kind}; pass override=True "
                                            "to replace it")

        def do_register(target: Any) -> Any:
            self[name] = {self.kind: target, f"{self.kind}_name": name, "description": description,
                          "init_params": init_params}
            return target

        return do_register(cls) if cls is not None else do_register

    def __getitem__(self, name: str) -> dict[str, Any]:
        entry = super().__getitem__(name)
        target = entry[self.kind]
        if isinstance(target, str):
            module, _, attr = target.partition(":")
            entry[self.kind] = getattr(importlib.import_module(module), attr)
        return entry

    @override
    def get(self, name: str, default: Optional[Any] = None) -> Any:  # type: ignore[override]
        """A new object of the class registered as ``name``, built with its registered arguments."""
        if name in self:
            entry = self[name]
            return entry[self.kind](**entry["init_params"])
        if default is not None:
            return default
        raise KeyError(f"{name!r} is not a registered {self.kind}; registered: {', '.join(sorted(self))}")

    def remove(self, name: str) -> None:
        """Remove the entry ``name``."""
        self.pop(name)

    def __str__(self) -> str:
        return f"Registered {self.kind.capitalize()}s: {', '.join(sorted(self))}"

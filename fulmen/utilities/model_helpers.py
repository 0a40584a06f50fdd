"""Questions about a user's classes: whether a hook is overridden; building a torchvision model by name."""

from __future__ import annotations

from typing import Any, Optional

from torch import nn

from fulmen.core.hooks import overrides

# The fulmen base classes whose methods a user's class may override, in the order ``is_overridden`` tries them. They
# are found by name in the instance's class hierarchy, as importing them here would run up the layers.
_BASES = (("fulmen.core.module", "LightningModule"), ("fulmen.core.datamodule", "LightningDataModule"),
          ("fulmen.callbacks.callback", "Callback"))


def is_overridden(method_name: str, instance: Optional[object] = None, parent: Optional[type] = None) -> bool:
    """Whether ``instance``'s class (or the instance itself) defines ``method_name`` differently from ``parent``.

    ``parent`` defaults to the fulmen base class ``instance`` derives from (LightningModule, LightningDataModule or
    Callback). A method that ``parent`` does not have counts as not overridden.
    """
    if instance is None:
        return False
    if parent is None:
        classes = {(cls.__module__, cls.__qualname__): cls for cls in type(instance).__mro__}
        parent = next((classes[base] for base in _BASES if base in classes), None)
        if parent is None:
            raise ValueError(f"is_overridden({method_name!r}, {type(instance).__name__}): pass parent=, the class "
                             "whose method it may override")
    if not hasattr(parent, method_name):
        return False
    return overrides(instance, parent, method_name)


def get_torchvision_model(model_name: str, **kwargs: Any) -> nn.Module:
    """``torchvision.models.get_model(model_name, **kwargs)`` (torchvision is not a fulmen dependency)."""
    try:
        from torchvision import models
    except ImportError as err:
        raise ModuleNotFoundError(f"get_torchvision_model({model_name!r}) needs torchvision: pip install "
                                  "torchvision (the release that matches your torch)") from err
    return models.get_model(model_name, **kwargs)

"""Questions about a user's classes: whether a hook is overridden; building a torchvision model by name."""

from __future__ import annotations

from typing import Any, Optional

from torch import nn


def is_overridden(method_name: str, instance: Optional[object] = None, parent: Optional[type] = None) -> bool:
    """Whether ``instance``'s class (or the instance itself) defines ``method_name`` differently from ``parent``.

    ``parent`` defaults to the fulmen base class ``instance`` derives from (LightningModule, LightningDataModule or
    Callback). A method that ``parent`` does not have counts as not overridden.
    """
    if instance is None:
        return False
    if parent is None:
        from fulmen.callbacks.callback import Callback
        from fulmen.core.datamodule import LightningDataModule
        from fulmen.core.module import LightningModule

        parent = next((base for base in (LightningModule, LightningDataModule, Callback)
                       if isinstance(instance, base)), None)
        if parent is None:
            raise ValueError(f"is_overridden({method_name!r}, {type(instance).__name__}): pass parent=, the class "
                             "whose method it may override")
    from fulmen.core.hooks import overrides

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

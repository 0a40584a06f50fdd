"""HyperparametersMixin: ``save_hyperparameters`` and the ``hparams`` views, for modules, datamodules and any
class of yours (Lightning's ``core.mixins.hparams_mixin``)."""

from __future__ import annotations

import inspect
from typing import Any, Optional, Union

from fulmen.utilities.hparams import AttributeDict
from fulmen.utilities.hparams import save_hyperparameters as _save_hyperparameters


class HyperparametersMixin:
    """``save_hyperparameters`` and the ``hparams`` views, shared by LightningModule and LightningDataModule."""

    __jit_unused_properties__ = ["hparams", "hparams_initial"]

    def __init__(self) -> None:
        super().__init__()
        self._log_hyperparams = True

    def save_hyperparameters(
        self,
        *args: Any,
        ignore: Optional[Union[list[str], str]] = None,
        frame: Optional[Any] = None,
        logger: bool = True,
    ) -> None:
        """Save arguments to ``self.hparams`` (and, in checkpoints, ``hyper_parameters``).

        With no arguments, every argument of ``__init__`` (of this class and its subclasses) is saved. Pass argument
        names to save only those, or a dict / Namespace to save it. ``ignore`` leaves names out; ``logger=False``
        keeps them from the logger.
        """
        self._log_hyperparams = logger
        if frame is None:
            frame = inspect.currentframe().f_back  # type: ignore[union-attr]
        _save_hyperparameters(self, *args, ignore=ignore, frame=frame)

    @property
    def hparams(self) -> AttributeDict:
        """The saved hyperparameters (mutable)."""
        if not hasattr(self, "_hparams"):
            self._hparams = AttributeDict()
        return self._hparams

    @property
    def hparams_initial(self) -> AttributeDict:
        """A copy of the hyperparameters as they were saved, before any later change to ``hparams``."""
        if not hasattr(self, "_hparams_initial"):
            return AttributeDict()
        return self._hparams_initial

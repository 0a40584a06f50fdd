"""The user's types: LightningModule (``module.py``), LightningDataModule (``datamodule.py``), their hooks
(``hooks.py``), the optimizer wrapper (``optimizer.py``) and checkpoint loading (``saving.py``)."""

from fulmen.core.datamodule import LightningDataModule
from fulmen.core.module import LightningModule

__all__ = ["LightningDataModule", "LightningModule"]

"""fulmen: the lightning.pytorch API on a small, fast, exact training loop.

``import fulmen as L`` gives ``L.Trainer``, ``L.LightningModule``, ``L.LightningDataModule``, ``L.Callback`` and
``L.seed_everything``. Optional packages (loggers, progress bars, the CLI) are imported only when used.
"""

import logging as _logging
from typing import TYPE_CHECKING

from fulmen.__about__ import __version__  # noqa: F401 (fulmen.__version__)
from fulmen.callbacks.callback import Callback
from fulmen.core.datamodule import LightningDataModule
from fulmen.core.module import LightningModule
from fulmen.trainer.trainer import Trainer
from fulmen.utilities.logo import LIGHTNING_LOGO, cli_lightning_logo  # noqa: F401 (at Lightning's path)
from fulmen.utilities.seed import seed_everything

# Like Lightning, show INFO messages (model summary, seed) when the application configured no logging itself.
_log = _logging.getLogger("fulmen")
if not _logging.getLogger().handlers and not _log.handlers:
    _log.addHandler(_logging.StreamHandler())
    _log.setLevel(_logging.INFO)
    _log.propagate = False

if TYPE_CHECKING:  # ``L.loggers.CSVLogger`` and the like, typed; at run time imported on first use
    from fulmen import (accelerators, callbacks, cli, core, demos, loggers, loops, overrides, plugins, profilers,
                        serve, strategies, trainer, tuner, utilities)

_SUBPACKAGES = ("accelerators", "callbacks", "cli", "core", "demos", "loggers", "loops", "overrides", "plugins",
                "profilers", "serve", "strategies", "trainer", "tuner", "utilities")


def __getattr__(name: str):  # noqa: ANN202
    # `L.loggers.CSVLogger` works as `pl.loggers.CSVLogger` does, without importing every submodule up front.
    if name in _SUBPACKAGES:
        import importlib

        return importlib.import_module(f"fulmen.{name}")
    raise AttributeError(f"module 'fulmen' has no attribute {name!r}")


__all__ = ["Callback", "LightningDataModule", "LightningModule", "Trainer", "seed_everything"]

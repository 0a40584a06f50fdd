"""OnExceptionCheckpoint: save a checkpoint when a fit ends with an exception (a crash, Ctrl-C, SIGTERM)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Union
from typing_extensions import override

from fulmen.callbacks.checkpoint import Checkpoint

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer


class OnExceptionCheckpoint(Checkpoint):
    """Save ``dirpath/<filename>.ckpt`` in ``on_exception``; ``fit(ckpt_path="last")`` resumes from it.

    The file is written atomically, so a second failure during the save leaves the previous one intact.
    """

    FILE_EXTENSION = ".ckpt"

    def __init__(self, dirpath: Union[str, os.PathLike[str]], filename: str = "on_exception") -> None:
        self.dirpath = os.fspath(dirpath)
        self.filename = filename

    @property
    def ckpt_path(self) -> str:
        """Where the checkpoint goes."""
        return os.path.join(self.dirpath, self.filename + self.FILE_EXTENSION)

    @override
    def on_exception(self, trainer: "Trainer", pl_module: Any, exception: BaseException) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            trainer.save_checkpoint(self.ckpt_path)

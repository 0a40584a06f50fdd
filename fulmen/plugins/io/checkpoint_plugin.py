"""CheckpointIO: how a strategy writes, reads and deletes checkpoint files (``Trainer(plugins=[MyIO()])``)."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import Any, Callable, Optional, Union

_PATH = Union[str, "os.PathLike[str]"]


class CheckpointIO(ABC):
    """Subclass to store checkpoints elsewhere or otherwise: ``save_checkpoint``, ``load_checkpoint`` and
    ``remove_checkpoint``. What a save gets is plain data (tensors, numbers, strings, lists, dicts)."""

    @abstractmethod
    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Optional[Any] = None) -> None:
        """Write ``checkpoint`` to ``path``."""

    @abstractmethod
    def load_checkpoint(self, path: _PATH, map_location: Optional[Any] = None,
                        weights_only: Optional[bool] = None) -> dict[str, Any]:
        """Read the checkpoint at ``path`` (``weights_only``: plain data only, no pickled objects)."""

    @abstractmethod
    def remove_checkpoint(self, path: _PATH) -> None:
        """Delete the checkpoint at ``path``."""

    @property
    def in_background(self) -> bool:
        """Whether saves return before the file is written (``AsyncCheckpointIO``): a strategy that writes its own
        files (sharded folders) then copies its tensors to host memory first and hands the write to ``start_write``."""
        return False

    def start_write(self, checkpoint: dict[str, Any], path: _PATH,
                    write: Callable[[dict[str, Any]], None]) -> None:
        """Run ``write(checkpoint)``, a strategy's own writer of ``path`` (a sharded folder), as this IO runs its
        saves: now, for a synchronous IO; in the background after a copy of ``checkpoint``'s tensors, for
        ``AsyncCheckpointIO``, with the same rules as its own saves (one in flight, errors raised later, the tasks of
        ``after_write`` run once it is done)."""
        write(checkpoint)

    def wait(self) -> None:
        """Return once every save started has been written (they all have, for a synchronous IO)."""

    def after_write(self, task: Callable[[], None]) -> None:
        """Run ``task`` once the checkpoint being written is durable: now, for a synchronous IO. A background
        writer runs it after its write (``AsyncCheckpointIO``), and drops it if the write fails, as a deletion or a
        ``last`` link must never run ahead of the file that replaces the old one."""
        task()

    def teardown(self) -> None:
        """The run ends: finish or release what this IO holds."""

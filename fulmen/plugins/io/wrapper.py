"""A CheckpointIO that adds behaviour around another one (``AsyncCheckpointIO`` wraps the default)."""

from __future__ import annotations

from typing import Any, Optional
from typing_extensions import override

from fulmen.plugins.io.checkpoint_plugin import _PATH, CheckpointIO
from fulmen.plugins.io.torch_plugin import TorchCheckpointIO


class _WrappingCheckpointIO(CheckpointIO):
    """Delegates to ``checkpoint_io`` (by default a ``TorchCheckpointIO``)."""

    def __init__(self, checkpoint_io: Optional[CheckpointIO] = None) -> None:
        if checkpoint_io is not None and not isinstance(checkpoint_io, CheckpointIO):
            raise TypeError(f"{type(self).__name__}(checkpoint_io={checkpoint_io!r}) must be a CheckpointIO")
        self._checkpoint_io = checkpoint_io if checkpoint_io is not None else TorchCheckpointIO()

    @property
    def checkpoint_io(self) -> CheckpointIO:
        return self._checkpoint_io

    @override
    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Optional[Any] = None) -> None:
        self._checkpoint_io.save_checkpoint(checkpoint, path, storage_options)

    @override
    def load_checkpoint(self, path: _PATH, map_location: Optional[Any] = None,
                        weights_only: Optional[bool] = None) -> dict[str, Any]:
        return self._checkpoint_io.load_checkpoint(path, map_location=map_location, weights_only=weights_only)

    @override
    def remove_checkpoint(self, path: _PATH) -> None:
        self._checkpoint_io.remove_checkpoint(path)

    @override
    def teardown(self) -> None:
        self._checkpoint_io.teardown()

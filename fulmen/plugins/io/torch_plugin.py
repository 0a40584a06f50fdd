"""TorchCheckpointIO: the default checkpoint IO, atomic ``torch.save`` writes and safe ``torch.load`` reads, on local
paths or fsspec URLs (``fulmen.checkpoint.io``)."""

from __future__ import annotations

from typing import Any, Optional
from typing_extensions import override

from fulmen.checkpoint import io
from fulmen.plugins.io.checkpoint_plugin import _PATH, CheckpointIO


class TorchCheckpointIO(CheckpointIO):
    """Write each checkpoint to a temporary file in the same folder, sync it, and rename it into place (a crash
    never leaves a partial file under the final name); read with ``torch.load(weights_only=True)`` unless
    ``weights_only=False`` is asked for."""

    @override
    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None:
            raise TypeError(f"TorchCheckpointIO.save_checkpoint(storage_options={storage_options!r}): options go in "
                            "the fsspec URL, or subclass CheckpointIO to use them")
        io.atomic_save(checkpoint, path)

    @override
    def load_checkpoint(self, path: _PATH, map_location: Optional[Any] = None,
                        weights_only: Optional[bool] = None) -> dict[str, Any]:
        return io.load(path, map_location=map_location, weights_only=weights_only)

    @override
    def remove_checkpoint(self, path: _PATH) -> None:
        io.remove(path)

"""AsyncCheckpointIO: checkpoints written by a background thread, so the loop waits only for a copy in memory."""

from __future__ import annotations

import threading
from typing import Any, Optional

import torch
from typing_extensions import override

from fulmen.plugins.io.checkpoint_plugin import _PATH, CheckpointIO
from fulmen.plugins.io.wrapper import _WrappingCheckpointIO
from fulmen.utilities.apply_to_collection import apply_to_collection


class AsyncCheckpointIO(_WrappingCheckpointIO):
    """Write checkpoints in a background thread through ``checkpoint_io`` (the default atomic writer).

    ``save_checkpoint`` copies the checkpoint's tensors to host memory, hands the write to the thread and returns;
    the training goes on while the file is written. At most one write is in flight: the next save waits for it,
    and so do deletions (a file leaves the top k only once its replacement is durable), loads and the end of the
    run. A write that failed raises, with its path, at the next save, load or delete, or when the run ends.
    """

    def __init__(self, checkpoint_io: Optional[CheckpointIO] = None) -> None:
        super().__init__(checkpoint_io)
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None
        self._error_path: Optional[str] = None

    @override
    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Optional[Any] = None) -> None:
        self.wait()
        # The snapshot: the loop goes on updating the weights and optimizer state in place while the file is written.
        snapshot = apply_to_collection(checkpoint, torch.Tensor, lambda t: t.detach().to("cpu", copy=True))
        target = str(path)

        def write() -> None:
            try:
                self.checkpoint_io.save_checkpoint(snapshot, path, storage_options)
            except BaseException as err:  # kept for the loop's thread, which raises it
                self._error, self._error_path = err, target

        self._thread = threading.Thread(target=write, name=f"fulmen-checkpoint-write:{target}", daemon=False)
        self._thread.start()

    @override
    def wait(self) -> None:
        """Wait for the write in flight, and raise its error if it failed."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, path = self._error, self._error_path
            self._error = self._error_path = None
            raise RuntimeError(f"The background write of the checkpoint {path!r} failed: {error}") from error

    @override
    def load_checkpoint(self, path: _PATH, map_location: Optional[Any] = None,
                        weights_only: Optional[bool] = None) -> dict[str, Any]:
        self.wait()
        return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)

    @override
    def remove_checkpoint(self, path: _PATH) -> None:
        self.wait()
        super().remove_checkpoint(path)

    @override
    def teardown(self) -> None:
        self.wait()
        super().teardown()

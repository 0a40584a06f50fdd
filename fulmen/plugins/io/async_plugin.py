"""AsyncCheckpointIO: checkpoints written by a background thread, so the loop waits only for a copy in memory."""

from __future__ import annotations

import errno as errno_names
import threading
from typing import Any, Callable, Optional

import torch
from typing_extensions import override

from fulmen.checkpoint import io
from fulmen.plugins.io.checkpoint_plugin import _PATH, CheckpointIO
from fulmen.plugins.io.torch_plugin import TorchCheckpointIO
from fulmen.plugins.io.wrapper import _WrappingCheckpointIO
from fulmen.utilities.apply_to_collection import apply_to_collection


class AsyncCheckpointIO(_WrappingCheckpointIO):
    """Write checkpoints in a background thread through ``checkpoint_io`` (the default atomic writer).

    ``save_checkpoint`` copies the checkpoint's tensors to host memory and returns; a thread then writes the file
    (temporary file, fsync, rename: a crash at any moment leaves the previous checkpoint whole), and after it what
    must wait for the new file to be durable: the deletion of the checkpoints it pushes out of the top k, and the
    ``last`` link's move to it. Training goes on meanwhile.

    At most one write is in flight, so host memory holds at most one snapshot (kept between saves, and reused by the
    next one): the next save waits for the write, and so do loads and the end of the run (a SIGTERM's checkpoint
    too). A write that fails drops the deletions that were
    waiting for it (the old files stay), and its error (path and errno) is raised at the next save, load or wait,
    or when the run ends: it is never lost.
    """

    def __init__(self, checkpoint_io: Optional[CheckpointIO] = None) -> None:
        super().__init__(checkpoint_io)
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._writing = False  # a write (or the tasks after it) is under way; guarded by _lock
        self._after: list[Callable[[], None]] = []  # run by the writer once its file is durable; guarded by _lock
        self._error: Optional[BaseException] = None
        self._error_path: Optional[str] = None
        self._buffers: list[torch.Tensor] = []  # the host memory of the last snapshot, reused by the next one

    @override
    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Optional[Any] = None) -> None:
        if type(self.checkpoint_io) is TorchCheckpointIO and storage_options is None:
            # The default writer: the snapshot is in host memory, so each tensor's bytes go to the file straight
            # from it (io.atomic_save's ``direct``), faster than torch.save's own write.
            self.start_write(checkpoint, path, lambda snapshot: io.atomic_save(snapshot, path, direct=True))
        else:
            self.start_write(checkpoint, path, lambda snapshot: self.checkpoint_io.save_checkpoint(
                snapshot, path, storage_options))

    @property
    @override
    def in_background(self) -> bool:
        return True

    @override
    def start_write(self, checkpoint: dict[str, Any], path: _PATH,
                    write: Callable[[dict[str, Any]], None]) -> None:
        self.wait()
        snapshot = self._snapshot(checkpoint)
        with self._lock:
            self._writing = True
        self._thread = threading.Thread(target=self._write, args=(write, snapshot, path),
                                        name=f"fulmen-checkpoint-write:{path}", daemon=False)
        self._thread.start()

    def _snapshot(self, checkpoint: dict[str, Any]) -> dict[str, Any]:
        """``checkpoint`` with its tensors copied to host memory: the loop goes on updating the weights and the
        optimizer state in place while the file is written.

        The copies go into the buffers of the previous snapshot where shapes and dtypes match (its write is done:
        ``save_checkpoint`` waited for it). Fresh memory would cost a page fault per 4 KiB on every save, which is
        most of the copy's time; so the run keeps one snapshot's worth of host memory, the most it ever holds.
        A tensor that appears twice (tied weights) is copied once, as ``torch.save`` stores it once.
        """
        spare = iter(self._buffers)
        used: list[torch.Tensor] = []
        seen: dict[int, torch.Tensor] = {}

        def copy(tensor: torch.Tensor) -> torch.Tensor:
            if id(tensor) in seen:
                return seen[id(tensor)]
            source = tensor.detach()
            if source.layout != torch.strided or not hasattr(source, "untyped_storage") or source.is_sparse:
                out = source.to("cpu", copy=True)  # (sparse and other layouts: a plain copy)
            else:
                reused = next(spare, None)
                if reused is not None and reused.shape == source.shape and reused.dtype == source.dtype:
                    out = reused
                else:  # page-locked memory makes the copy from a GPU a direct transfer
                    out = torch.empty(source.shape, dtype=source.dtype, device="cpu", pin_memory=source.is_cuda)
                out.copy_(source)
                used.append(out)
            seen[id(tensor)] = out
            return out

        snapshot = apply_to_collection(checkpoint, torch.Tensor, copy)
        self._buffers = used
        return snapshot

    def _write(self, write: Callable[[dict[str, Any]], None], snapshot: dict[str, Any], path: _PATH) -> None:
        """The writer thread: the file, then the tasks that waited for it, in order."""
        try:
            write(snapshot)
        except BaseException as err:  # kept for the loop's thread, which raises it
            with self._lock:
                self._error, self._error_path = err, str(path)
                self._after.clear()  # the files they would delete or relink to are still the newest complete ones
                self._writing = False
            return
        while True:
            with self._lock:
                if not self._after or self._error is not None:
                    self._after.clear()
                    self._writing = False
                    return
                task = self._after.pop(0)
            try:
                task()
            except BaseException as err:
                with self._lock:
                    self._error, self._error_path = err, str(path)

    @override
    def after_write(self, task: Callable[[], None]) -> None:
        with self._lock:
            if self._writing:
                self._after.append(task)
                return
        task()

    @override
    def wait(self) -> None:
        """Wait for the write in flight (and what waited for it), and raise its error if it failed."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, path = self._error, self._error_path
            self._error = self._error_path = None
            number = getattr(error, "errno", None)
            code = f" (errno {number}, {errno_names.errorcode.get(number, '?')})" if number else ""
            raise RuntimeError(f"The background write of the checkpoint {path!r} failed{code}: {error}; the "
                               "checkpoints written before it are whole and kept") from error

    @override
    def load_checkpoint(self, path: _PATH, map_location: Optional[Any] = None,
                        weights_only: Optional[bool] = None) -> dict[str, Any]:
        self.wait()
        return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)

    @override
    def remove_checkpoint(self, path: _PATH) -> None:
        # Top-k bookkeeping: the file pushed out goes once the one that replaces it is durable.
        self.after_write(lambda: self.checkpoint_io.remove_checkpoint(path))

    @override
    def teardown(self) -> None:
        self.wait()
        self._buffers = []  # the run's snapshot memory goes back
        super().teardown()

"""Reading and writing checkpoint files: atomic writes, safe loads, local paths and fsspec URLs.

A write goes to a temporary file in the destination folder, is flushed and fsynced, then renamed over the final name
with ``os.replace`` (atomic on POSIX and Windows), and the folder is fsynced so that the rename itself survives a
power cut. A process killed at any moment leaves either the old file or the new one under the final name, never a
truncated one. Remote URLs (``s3://``, ``memory://``, ...) go through fsspec: written to a temporary name, then moved.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import pickle
import socket
import tempfile
from typing import Any, Optional, Union

import torch

_PATH = Union[str, "os.PathLike[str]"]

# Temporary files carry this prefix so that nothing (``ckpt_path="last"``, top-k bookkeeping) mistakes one for a
# checkpoint, and so that leftovers of a killed process are recognisable.
TMP_PREFIX = ".fulmen-tmp-"
TMP_SUFFIX = ".part"
# A temporary file's name says who writes it: ".fulmen-tmp-<host>-<pid>-<random>.part".
_WRITER = re.compile(re.escape(TMP_PREFIX) + r"(?P<host>[A-Za-z0-9_.]+)-(?P<pid>\d+)-")
_writing: set[str] = set()  # this process's temporary files (and checkpoint folders) while it writes them


def is_url(path: _PATH) -> bool:
    """Whether ``path`` names a remote (fsspec) location rather than a local file."""
    text = os.fspath(path)
    return "://" in text and not text.startswith("file://")


def filesystem(path: _PATH) -> Any:
    """The fsspec filesystem of ``path`` (imported only when a URL is used)."""
    import fsspec

    fs, _ = fsspec.core.url_to_fs(os.fspath(path))
    return fs


def local_path(path: _PATH) -> str:
    text = os.fspath(path)
    return text[len("file://"):] if text.startswith("file://") else text


def exists(path: _PATH) -> bool:
    return filesystem(path).exists(os.fspath(path)) if is_url(path) else os.path.exists(local_path(path))


def modified_time(path: _PATH) -> float:
    if is_url(path):
        stamp = filesystem(path).modified(os.fspath(path))
        return stamp.timestamp()
    return os.path.getmtime(local_path(path))


def remove(path: _PATH) -> None:
    """Delete a checkpoint file (missing files are fine: another process may have removed it)."""
    if is_url(path):
        fs = filesystem(path)
        if fs.exists(os.fspath(path)):
            fs.rm(os.fspath(path))
        return
    target = local_path(path)
    if is_sharded(target):
        shutil.rmtree(target, ignore_errors=True)
        return
    try:
        os.remove(target)
    except FileNotFoundError:
        pass


def makedirs(path: _PATH, fix: str = "choose a folder you can write to") -> None:
    """Create folder ``path`` (and its parents); when that fails, the error names the folder and ``fix``."""
    try:
        if is_url(path):
            filesystem(path).makedirs(os.fspath(path), exist_ok=True)
        else:
            os.makedirs(local_path(path), exist_ok=True)
    except OSError as err:
        raise cannot_create(err, path, fix) from err


def cannot_create(err: OSError, path: _PATH, fix: str) -> OSError:
    """``err`` (same type, so ``except PermissionError`` still works) with a message naming the folder and the fix."""
    return type(err)(err.errno, f"Cannot create the folder {os.fspath(path)!r} ({err.strerror or err}); {fix}")


def listdir(path: _PATH) -> list[str]:
    """Full paths of the entries of folder ``path`` (empty when it does not exist)."""
    if is_url(path):
        fs = filesystem(path)
        if not fs.exists(os.fspath(path)):
            return []
        # Named after the folder as given, as ModelCheckpoint names its files, so the two compare equal.
        folder = os.fspath(path).rstrip("/")
        return sorted(f"{folder}/{p.rstrip('/').rsplit('/', 1)[-1]}" for p in fs.ls(os.fspath(path), detail=False))
    folder = local_path(path)
    if not os.path.isdir(folder):
        return []
    return [os.path.join(folder, name) for name in sorted(os.listdir(folder))]


def atomic_save(checkpoint: dict[str, Any], path: _PATH, direct: bool = False) -> None:
    """Write ``checkpoint`` with ``torch.save`` so that ``path`` is never seen half-written. A write that fails
    (a full disk, an I/O error) leaves the file that was there, and raises an OSError (same errno) that says so.

    ``direct`` (for a checkpoint whose tensors are all in host memory, as ``AsyncCheckpointIO``'s snapshot): the
    file's layout is written first (all that ``torch.save`` writes but the tensors' bytes), then each storage's
    bytes at its place in one write straight from its memory. The file is the one ``torch.save`` writes, but for
    the zip CRC fields of the storages, which are left unfilled (as torch's ``set_crc32_options(False)`` leaves
    them; ``torch.load`` does not read them): computing them is a pass over every byte."""
    try:
        if is_url(path):
            _save_remote(checkpoint, os.fspath(path))
        else:
            _save_local(checkpoint, path, direct)
    except OSError as err:
        raise OSError(err.errno, f"Could not write the checkpoint {os.fspath(path)!r} ({err.strerror or err}); "
                      "nothing was replaced: the previous checkpoint files are as they were. Free space or fix the "
                      "storage, or save elsewhere (ModelCheckpoint(dirpath=...))") from err


def _save_local(checkpoint: dict[str, Any], path: _PATH, direct: bool = False) -> None:
    target = os.path.abspath(local_path(path))
    folder = os.path.dirname(target)
    makedirs(folder, "save the checkpoint to a folder you can write to (ModelCheckpoint(dirpath=...) or "
                     "Trainer(default_root_dir=...))")
    # A crash mid-write leaves this hidden ".part" file, which no "*.ckpt" search takes for a checkpoint; the next
    # save into the folder (or a ModelCheckpoint's set-up) removes it, as its name shows its writer is gone.
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{_host()}-{os.getpid()}-", suffix=TMP_SUFFIX, dir=folder)
    _writing.add(tmp)
    # Held until the rename: a process on another machine sharing the folder sees that the file is being written.
    lock = _hold_lock(fd)
    try:
        # mkstemp creates the file readable by its owner only; give it the mode any new file gets (the umask's).
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            if direct:
                _save_direct(checkpoint, f, tmp)
            else:
                _torch_save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.remove(tmp)
        except FileNotFoundError:
            pass
        raise
    finally:
        _writing.discard(tmp)
        if lock is not None:
            os.close(lock)
    _fsync_dir(folder)
    if folder not in _cleaned:
        _cleaned.add(folder)
        remove_stale_temporaries(folder)


_cleaned: set[str] = set()  # folders this process has cleared of stale temporary files


def _torch_save(checkpoint: dict[str, Any], f: Any) -> None:
    writer = _Writes(f)
    try:
        torch.save(checkpoint, writer)
    except RuntimeError as err:
        if writer.error is not None:  # torch turns a failed write (ENOSPC, EIO) into a RuntimeError
            raise writer.error from err
        raise


def _save_direct(checkpoint: dict[str, Any], f: Any, name: str) -> None:
    """``torch.save(checkpoint)`` into ``f`` (the open file ``name``): the layout first, with the storages' places
    left empty, then each storage's bytes from its memory. Storages off the host go through torch.save's own
    write."""
    storages = storage_order(checkpoint)
    if not hasattr(os, "pwrite") or any(storage.device.type != "cpu" for storage in storages):  # (pwrite: POSIX)
        _torch_save(checkpoint, f)
        return
    with torch.serialization.skip_data():
        _torch_save(checkpoint, f)
    f.flush()
    reader: Any = torch._C.PyTorchFileReader(name)  # (its stubs lack get_record_offset)
    records = [f"data/{key}" for key in range(len(storages))]
    if sum(r.startswith("data/") for r in reader.get_all_records()) != len(storages) or any(
            reader.get_record_size(record) != storage.nbytes() for record, storage in zip(records, storages)):
        # torch laid the storages out otherwise than its pickler's order said: write the whole file the usual way.
        f.seek(0)
        f.truncate()
        _torch_save(checkpoint, f)
        return
    for record, storage in zip(records, storages):
        _write_at(f.fileno(), storage, reader.get_record_offset(record))


def _write_at(fd: int, storage: torch.UntypedStorage, offset: int) -> None:
    import ctypes

    size = storage.nbytes()
    if size == 0:
        return
    data = memoryview((ctypes.c_char * size).from_address(storage.data_ptr())).cast("B")  # no copy
    done = 0
    while done < size:  # (a write may take only part of a large buffer)
        done += os.pwrite(fd, data[done:], offset + done)


def storage_order(checkpoint: Any) -> list[torch.UntypedStorage]:
    """The storages of ``checkpoint``'s tensors in the order ``torch.save`` writes them: the order in which its
    pickler first meets them (``torch.save`` numbers them so), found by pickling the structure alone."""
    order: list[torch.UntypedStorage] = []
    seen: dict[int, int] = {}

    class _Order(pickle.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            if isinstance(obj, torch.storage.TypedStorage) or torch.is_storage(obj):
                storage = obj._untyped_storage if isinstance(obj, torch.storage.TypedStorage) else obj
                if storage._cdata not in seen:
                    seen[storage._cdata] = len(order)
                    order.append(storage)
                return ("storage", seen[storage._cdata])
            return None

    _Order(_Discard(), protocol=torch.serialization.DEFAULT_PROTOCOL).dump(checkpoint)
    return order


class _Discard:
    """A file that keeps nothing (the pickled structure is not needed, only the order it meets storages in)."""

    def write(self, data: Any) -> int:
        return len(data)


def _host() -> str:
    """This machine's name as it may appear in a file name."""
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname())[:64] or "host"


def _hold_lock(fd: int) -> Optional[int]:
    """An exclusive lock on the file of ``fd``, held through a duplicate descriptor (returned, to be closed when
    the write is done) so that it outlives the file object that writes; None where there are no locks."""
    try:
        import fcntl
    except ImportError:  # not POSIX: the name's pid alone tells whether the writer lives
        return None
    lock = os.dup(fd)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # a filesystem without locks
        os.close(lock)
        return None
    return lock


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def _unlocked(path: str) -> bool:
    """Whether no process holds the write lock of ``path`` (taken by each writer for the whole write)."""
    try:
        import fcntl
    except ImportError:
        return True
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(fd)  # closing releases the lock
    return True


def is_stale_temporary(path: str) -> bool:
    """Whether ``path`` is a temporary checkpoint file whose writer is gone (killed during a save).

    Its name tells the writer's machine and pid: on this machine, the file is stale when that process no longer
    runs (or is this process, which is not writing it). A file of another machine, or of an older release, is
    stale when no process holds its write lock. A file a live process is writing is never stale.

    A checkpoint folder being written (``staging_folder``) is stale on the same terms, but only while incomplete:
    its ``meta.ckpt``, written last, makes it a whole checkpoint (it may be the newest one, were its writer killed
    while putting it in place), and a folder of another machine stays, as folders hold no lock."""
    name = os.path.basename(path)
    if os.path.isdir(path):
        writer = _WRITER.search(name)
        if writer is None or os.path.abspath(path) in _writing or writer["host"] != _host() or os.path.isfile(
                os.path.join(path, SHARDED_META)):
            return False
        pid = int(writer["pid"])
        return pid == os.getpid() or not _pid_alive(pid)
    if not (name.startswith(TMP_PREFIX) and name.endswith(TMP_SUFFIX)) or not os.path.isfile(path):
        return False
    if path in _writing:
        return False
    writer = _WRITER.match(name)
    if writer is not None and writer["host"] == _host():
        pid = int(writer["pid"])
        if pid == os.getpid():
            return True  # not among this process's writes (checked above): left by an earlier process of this pid
        return not _pid_alive(pid) and _unlocked(path)
    return _unlocked(path)


def remove_stale_temporaries(folder: _PATH) -> list[str]:
    """Delete the temporary files (and incomplete checkpoint folders) that writers killed during a save left in
    ``folder`` (local folders only); returns their paths. What live processes are writing stays."""
    if is_url(folder):
        return []
    local = local_path(folder)
    try:
        names = os.listdir(local)
    except OSError:
        return []
    removed = []
    for name in names:
        path = os.path.join(local, name)
        if is_stale_temporary(path):
            try:
                if os.path.isdir(path):
                    shutil.rmtree(path)
                else:
                    os.remove(path)
            except OSError:
                continue
            removed.append(path)
    return removed


class _Writes:
    """A file's ``write`` that remembers the OSError it raised, which torch.save reports only as a RuntimeError."""

    def __init__(self, file: Any) -> None:
        self.file, self.error = file, None

    def write(self, data: Any) -> int:
        try:
            return self.file.write(data)
        except OSError as err:
            self.error = err
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.file, name)


def _umask() -> int:
    """The process's umask: from /proc on Linux; elsewhere by setting it and setting it straight back (a thread
    creating a file in that instant would see 022)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(folder: str) -> None:
    # The rename lives in the folder's entry table; without this fsync a power cut may lose the new name.
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _save_remote(checkpoint: dict[str, Any], url: str) -> None:
    fs = filesystem(url)
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    parent, name = url.rsplit("/", 1)
    tmp = f"{parent}/{TMP_PREFIX}{name}.part"
    fs.makedirs(parent, exist_ok=True)
    try:
        with fs.open(tmp, "wb") as f:
            f.write(buffer.getvalue())
        fs.mv(tmp, url)
    except BaseException:
        if fs.exists(tmp):
            fs.rm(tmp)
        raise


SHARDED_META = "meta.ckpt"  # in a sharded checkpoint folder: everything but the weights and optimizer state


def is_sharded(path: _PATH) -> bool:
    """Whether ``path`` is a sharded checkpoint folder (written by FSDPStrategy(state_dict_type="sharded"))."""
    folder = os.fspath(path)
    return not is_url(path) and os.path.isdir(folder) and os.path.isfile(os.path.join(folder, SHARDED_META))


def staging_folder(target: str) -> str:
    """A new folder's name beside ``target``, for a checkpoint folder until it is complete: it tells this machine
    and process, so that a later run can tell a folder whose writer was killed (``is_stale_temporary``)."""
    import uuid

    staging = f"{target}.{TMP_PREFIX}{_host()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    _writing.add(os.path.abspath(staging))  # until publish_folder puts it in place (a sweep names it absolute)
    return staging


def publish_folder(staging: str, meta: dict[str, Any], target: str) -> None:
    """Add ``meta`` (as ``meta.ckpt``) to the complete folder ``staging`` and put the folder under the name
    ``target``, whose old folder it replaces in one step where the filesystem can swap two names (Linux): a crash at
    any moment leaves the old folder or the new one under ``target``, never neither."""
    atomic_save(meta, os.path.join(staging, SHARDED_META))
    _writing.discard(os.path.abspath(staging))  # whole now: never a stale temporary
    parent = os.path.dirname(os.path.abspath(target))
    if os.path.isdir(target) and _swap(staging, target):
        _fsync_dir(parent)
        shutil.rmtree(staging)  # the old folder, now under the staging name
        return
    if os.path.isdir(target):
        # No swap here: the old folder steps aside first, so a crash between the two renames leaves both folders
        # whole under temporary names (the new one is the staging folder) rather than deleting the old one first.
        aside = f"{target}.{TMP_PREFIX}old-{os.getpid()}"
        os.replace(target, aside)
        os.replace(staging, target)
        _fsync_dir(parent)
        shutil.rmtree(aside)
        return
    if os.path.lexists(target):
        os.remove(target)  # a single-file checkpoint of the same name
    os.replace(staging, target)
    _fsync_dir(parent)


def _swap(first: str, second: str) -> bool:
    """Exchange the names of two folders atomically (Linux's renameat2 with RENAME_EXCHANGE); False where the
    system or the filesystem cannot."""
    import sys

    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    import errno

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # a C library older than glibc 2.28
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_cwd, exchange = -100, 2  # AT_FDCWD, RENAME_EXCHANGE
    if renameat2(at_cwd, os.fsencode(first), at_cwd, os.fsencode(second), exchange) == 0:
        return True
    number = ctypes.get_errno()
    if number in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # this filesystem has no exchange
        return False
    raise OSError(number, f"Could not put the checkpoint folder {first!r} in place of {second!r}: "
                          f"{os.strerror(number)}")


# In a checkpoint folder of DeepSpeedStrategy: the engine's own files (each rank's optimizer partition), beside a
# meta.ckpt that holds everything else, the whole weights included; its optimizer states are stand-ins marked so.
ENGINE_FOLDER = "engine"
ENGINE_STATE = "deepspeed_engine"


def load_sharded(folder: str, map_location: Any = None, weights_only: Optional[bool] = None) -> dict[str, Any]:
    """A sharded checkpoint folder read whole (the shards of every rank put together), in any process and without
    a process group: it then loads on any number of processes.

    A DeepSpeed folder gives its meta.ckpt, with the optimizer stand-ins pointing at the engine's files (which the
    engine reads when training resumes, only when ``weights_only`` is False: they hold pickled objects)."""
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.default_planner import _EmptyStateDictLoadPlanner
    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict

    checkpoint = load(os.path.join(folder, SHARDED_META), map_location=map_location)
    engine = os.path.join(folder, ENGINE_FOLDER)
    if os.path.isdir(engine):
        checkpoint["optimizer_states"] = [{ENGINE_STATE: engine, "trusted": weights_only is False}
                                          for _ in checkpoint.get("optimizer_states", [])]
        return checkpoint
    tensors: dict[str, Any] = {}
    _load_state_dict(tensors, storage_reader=FileSystemReader(folder), planner=_EmptyStateDictLoadPlanner(),
                     no_dist=True)
    checkpoint.update(tensors)
    return checkpoint


def load(path: _PATH, map_location: Any = None, weights_only: Optional[bool] = None) -> dict[str, Any]:
    """Read a checkpoint, safely by default.

    ``weights_only`` None or True loads with ``torch.load(weights_only=True)``: tensors, numbers, strings, lists and
    dicts only, so loading runs no code from the file. Pass ``weights_only=False`` to allow pickled objects, only
    for files you trust. A missing path raises FileNotFoundError naming it; a file that is not a checkpoint (or is
    truncated) raises ValueError naming the file.
    """
    safe = weights_only is not False
    name = os.fspath(path)
    if is_url(path):
        fs = filesystem(path)
        if not fs.exists(name):
            raise FileNotFoundError(f"Checkpoint not found: {name!r}")
        with fs.open(name, "rb") as f:
            data: Any = io.BytesIO(f.read())
    else:
        data = local_path(path)
        if is_sharded(data):
            return load_sharded(data, map_location, weights_only)
        if not os.path.isfile(data):
            kind = "is a folder, not a checkpoint file" if os.path.isdir(data) else "does not exist"
            raise FileNotFoundError(f"Checkpoint {name!r} {kind}")
    try:
        checkpoint = torch.load(data, map_location=map_location, weights_only=safe)
    except pickle.UnpicklingError as err:
        # torch's safe unpickler refused a class or a function (allowed, or blocked outright): the file is whole
        # but holds code. Other unpickling errors mean a damaged file.
        if safe and ("Unsupported global" in str(err) or "unsupported GLOBAL" in str(err)):
            raise pickle.UnpicklingError(
                f"Checkpoint {name!r} holds Python objects that a safe load refuses "
                f"({_first_line(err)}); if you trust the file, pass weights_only=False"
            ) from err
        # torch's text for a refused load advises weights_only=False, which would not help a damaged file.
        detail = str(err).split("WeightsUnpickler error:")[-1] if "WeightsUnpickler error:" in str(err) else str(err)
        raise ValueError(f"{name!r} is not a valid checkpoint: it is damaged or not a torch.save file (unpickling "
                         f"failed: {detail.strip().splitlines()[0] if detail.strip() else type(err).__name__})"
                         ) from err
    except Exception as err:  # a truncated zip, a pickle cut short, a file of another format
        raise ValueError(
            f"{name!r} is not a valid checkpoint: it is truncated or not a torch.save file ({_first_line(err)})"
        ) from err
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{name!r} is not a valid checkpoint: it holds a {type(checkpoint).__name__}, not a dict")
    return checkpoint


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__

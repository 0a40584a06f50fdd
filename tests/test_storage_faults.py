"""A full disk or a failing filesystem during a checkpoint save: a clear error with the errno, the previous
checkpoints intact and loadable, ModelCheckpoint's record of its files unchanged, and the run resumable."""

from __future__ import annotations

import errno
import io as pyio

import fsspec
import pytest
import torch
from fsspec.implementations.memory import MemoryFileSystem

import fulmen
from fulmen.callbacks import ModelCheckpoint
from fulmen.checkpoint import io
from fulmen.demos.boring_classes import BoringModel


class FailingFS(MemoryFileSystem):
    """An in-memory filesystem whose writes fail part-way once ``budget`` bytes have been written in total
    (``fail_with``: the errno), as a disk filling up or a storage error would."""

    protocol = "failing"
    budget: int | None = None
    written = 0
    fail_with = errno.ENOSPC

    def _open(self, path, mode="rb", **kwargs):
        f = super()._open(path, mode, **kwargs)
        if "w" not in mode:
            return f
        fs = type(self)
        real_write = f.write

        def write(data):
            if fs.budget is not None and fs.written + len(data) > fs.budget:
                raise OSError(fs.fail_with, {errno.ENOSPC: "No space left on device", errno.EIO: "Input/output error"}
                              [fs.fail_with])
            fs.written += len(data)
            return real_write(data)

        f.write = write
        return f


fsspec.register_implementation("failing", FailingFS, clobber=True)


@pytest.fixture(autouse=True)
def fresh_fs():
    FailingFS.store.clear()
    FailingFS.pseudo_dirs[:] = [""]
    FailingFS.budget, FailingFS.written, FailingFS.fail_with = None, 0, errno.ENOSPC
    yield


class Logs(BoringModel):
    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self.step(batch) - self.current_epoch)  # improves every epoch: each is a new best


def trainer(**kwargs):
    settings = dict(max_epochs=4, limit_train_batches=2, limit_val_batches=2, logger=False,
                    enable_progress_bar=False, enable_model_summary=False)
    return fulmen.Trainer(**{**settings, **kwargs})


def checkpoint_size():
    t = trainer(enable_checkpointing=False, max_epochs=1)
    t.fit(Logs())
    t.save_checkpoint("memory://probe.ckpt")
    return len(fsspec.filesystem("memory").cat("/probe.ckpt"))


@pytest.mark.parametrize("fail_with", [errno.ENOSPC, errno.EIO])
def test_a_save_that_fails_part_way(fail_with):
    size = checkpoint_size()
    callback = ModelCheckpoint(dirpath="failing://ckpt", monitor="val_loss", save_top_k=2, save_last=True)
    # Room for three files (epochs 0 and 1: top-k and last... minus one), then the fourth write fails half-way.
    FailingFS.budget, FailingFS.fail_with = int(3.5 * size), fail_with
    t = trainer(callbacks=[callback])
    with pytest.raises(OSError) as caught:
        t.fit(Logs())
    assert caught.value.errno == fail_with
    assert "Could not write the checkpoint 'failing://ckpt/" in str(caught.value)
    assert "previous checkpoint files are as they were" in str(caught.value)

    stored = {p: f for p, f in FailingFS.store.items() if "ckpt/" in p}
    files = sorted(p.rsplit("/", 1)[1] for p in stored)
    assert len(files) >= 2 and not [f for f in files if f.startswith(io.TMP_PREFIX)]  # no half-written file left
    for path in stored:  # what is there loads
        torch.load(pyio.BytesIO(fsspec.filesystem("failing").cat(path)), weights_only=True)
    # The callback's record names only files that exist.
    recorded = set(callback.best_k_models) | {callback.best_model_path, callback.last_model_path}
    assert {p.rsplit("/", 1)[1] for p in recorded if p} <= set(files)

    FailingFS.budget = None  # space again: the run resumes from the last good checkpoint and finishes
    again = trainer(callbacks=[ModelCheckpoint(dirpath="failing://ckpt", monitor="val_loss", save_top_k=2,
                                               save_last=True)])
    again.fit(Logs(), ckpt_path=callback.last_model_path)
    assert again.current_epoch == 4


def test_a_full_local_disk(tmp_path, monkeypatch):
    """The local path: the OSError that torch.save hides in a RuntimeError comes out with its errno."""
    io.atomic_save({"epoch": 1}, tmp_path / "last.ckpt")
    import os

    real = os.fdopen

    class Full:
        def __init__(self, f):
            self.f, self.n = f, 0

        def write(self, data):
            self.n += len(data)
            if self.n > 500:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(os, "fdopen", lambda fd, mode: Full(real(fd, mode)))
    with pytest.raises(OSError, match="No space left on device.*as they were") as caught:
        io.atomic_save({"epoch": 2, "w": torch.randn(5000)}, tmp_path / "last.ckpt")
    monkeypatch.undo()
    assert caught.value.errno == errno.ENOSPC
    assert torch.load(tmp_path / "last.ckpt", weights_only=True) == {"epoch": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]

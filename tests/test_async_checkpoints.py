"""AsyncCheckpointIO: the loop waits only for the copy in host memory; the write, and the top-k deletions and the
``last`` link that must follow it, run in the background, one write at a time; a failed write is never lost.

The writer below blocks on an Event, so the tests see the moments in between without timing anything."""

from __future__ import annotations

import errno
import os
import threading

import pytest
import torch

import fulmen as L
from fulmen.callbacks import ModelCheckpoint
from fulmen.demos.boring_classes import BoringModel
from fulmen.plugins.io import AsyncCheckpointIO, TorchCheckpointIO

BOUND = 600  # seconds: generous, as a busy machine may be slow; the writes here are tiny


class HeldWriter(TorchCheckpointIO):
    """The default atomic writer, held at the start of each write until the test lets it go."""

    def __init__(self) -> None:
        self.go = threading.Event()
        self.started = threading.Event()
        self.fail_with: OSError | None = None

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        self.started.set()
        assert self.go.wait(BOUND)
        if self.fail_with is not None:
            raise self.fail_with
        super().save_checkpoint(checkpoint, path, storage_options)


def test_the_save_returns_before_the_file_is_written_and_keeps_a_snapshot(tmp_path):
    inner = HeldWriter()
    io = AsyncCheckpointIO(inner)
    weights = torch.zeros(3)
    io.save_checkpoint({"state_dict": {"w": weights}}, tmp_path / "a.ckpt")
    assert inner.started.wait(BOUND)
    assert not (tmp_path / "a.ckpt").exists()  # the loop has its hands back; the write is held
    weights += 1  # the training goes on updating the tensors in place
    inner.go.set()
    io.wait()
    assert torch.equal(torch.load(tmp_path / "a.ckpt", weights_only=True)["state_dict"]["w"], torch.zeros(3))


def test_a_deletion_waits_until_the_new_file_is_durable(tmp_path):
    inner = HeldWriter()
    io = AsyncCheckpointIO(inner)
    old = tmp_path / "old.ckpt"
    torch.save({"x": 1}, old)
    io.save_checkpoint({"x": 2}, tmp_path / "new.ckpt")
    assert inner.started.wait(BOUND)
    io.remove_checkpoint(old)  # top-k bookkeeping: returns at once
    assert old.exists() and not (tmp_path / "new.ckpt").exists()
    inner.go.set()
    io.wait()
    assert not old.exists() and torch.load(tmp_path / "new.ckpt", weights_only=True) == {"x": 2}


def test_a_failed_write_keeps_the_old_files_and_raises_with_path_and_errno_at_the_next_save(tmp_path):
    inner = HeldWriter()
    io = AsyncCheckpointIO(inner)
    old = tmp_path / "old.ckpt"
    torch.save({"x": 1}, old)
    inner.fail_with = OSError(errno.ENOSPC, "No space left on device")
    io.save_checkpoint({"x": 2}, tmp_path / "new.ckpt")
    io.remove_checkpoint(old)
    inner.go.set()
    with pytest.raises(RuntimeError, match=r"new\.ckpt.*errno 28, ENOSPC.*No space left") as info:
        io.save_checkpoint({"x": 3}, tmp_path / "next.ckpt")
    assert isinstance(info.value.__cause__, OSError)
    assert old.exists()  # the deletion was waiting for a file that never came: dropped
    assert not (tmp_path / "next.ckpt").exists()  # nothing started after the failure was raised
    io.wait()  # raised once, not again


def test_the_end_of_the_run_raises_a_failed_write(tmp_path):
    inner = HeldWriter()
    inner.fail_with = OSError(errno.EIO, "Input/output error")
    inner.go.set()
    io = AsyncCheckpointIO(inner)
    io.save_checkpoint({"x": 2}, tmp_path / "new.ckpt")
    with pytest.raises(RuntimeError, match=r"errno 5, EIO"):
        io.teardown()


def test_one_write_in_flight(tmp_path):
    inner = HeldWriter()
    io = AsyncCheckpointIO(inner)
    io.save_checkpoint({"x": 1}, tmp_path / "a.ckpt")
    assert inner.started.wait(BOUND)
    second = threading.Thread(target=io.save_checkpoint, args=({"x": 2}, tmp_path / "b.ckpt"))
    second.start()
    second.join(0.5)
    assert second.is_alive()  # the second save waits for the first write
    inner.go.set()
    second.join(BOUND)
    io.wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.ckpt", "b.ckpt"]


class Scored(BoringModel):
    def validation_step(self, batch, batch_idx):
        loss = super().validation_step(batch, batch_idx)["x"]
        self.log("score", float(self.current_epoch))  # rises each epoch: the newest files are the best
        return loss


@pytest.mark.parametrize("save_last", [True, "link"])
def test_a_fit_leaves_the_same_files_as_a_synchronous_one(tmp_path, save_last):
    def fit(folder, plugins):
        callback = ModelCheckpoint(dirpath=folder, monitor="score", mode="max", save_top_k=2, save_last=save_last)
        trainer = L.Trainer(max_epochs=4, limit_train_batches=2, limit_val_batches=1, logger=False,
                            enable_progress_bar=False, enable_model_summary=False, callbacks=[callback],
                            plugins=plugins, default_root_dir=folder)
        torch.manual_seed(0)
        trainer.fit(Scored())
        return callback

    sync = fit(tmp_path / "sync", None)
    background = fit(tmp_path / "async", [AsyncCheckpointIO()])
    names = sorted(os.listdir(tmp_path / "sync"))
    assert sorted(os.listdir(tmp_path / "async")) == names and len(names) == 3
    for name in names:
        ours = torch.load(tmp_path / "async" / name, weights_only=True)
        theirs = torch.load(tmp_path / "sync" / name, weights_only=True)
        assert ours["global_step"] == theirs["global_step"]
        for key, value in theirs["state_dict"].items():
            assert torch.equal(ours["state_dict"][key], value)
    assert os.path.basename(background.best_model_path) == os.path.basename(sync.best_model_path)
    if save_last == "link":
        link = tmp_path / "async" / "last.ckpt"
        assert link.is_symlink() and os.path.realpath(link) == os.path.realpath(background.best_model_path)


def odd_state() -> dict:
    """Tensors of every kind a checkpoint may hold: tied, bfloat16, empty, 0-dim, a strided view, integers, sparse,
    nested in the optimizer state."""
    torch.manual_seed(0)
    base = torch.randn(6, 8)
    state = {"state_dict": {"w": torch.randn(64, 32), "bf16": torch.randn(10).to(torch.bfloat16),
                            "empty": torch.empty(0, 3), "scalar": torch.tensor(2.5), "view": base[:, ::2],
                            "steps": torch.arange(5)},
             "optimizer_states": [{"state": {0: {"exp_avg": torch.randn(64, 32), "step": torch.tensor(7.0)}},
                                   "param_groups": [{"lr": 0.1, "params": [0]}]}],
             "sparse": torch.randn(4, 4).to_sparse(), "epoch": 3}
    state["state_dict"]["tied"] = state["state_dict"]["w"]
    return state


def assert_same(got, expected):
    if isinstance(expected, dict):
        assert got.keys() == expected.keys()
        for key in expected:
            assert_same(got[key], expected[key])
    elif isinstance(expected, (list, tuple)):
        assert len(got) == len(expected)
        for a, b in zip(got, expected):
            assert_same(a, b)
    elif isinstance(expected, torch.Tensor):
        assert got.dtype == expected.dtype and torch.equal(got.to_dense(), expected.to_dense())
    else:
        assert got == expected


@pytest.mark.parametrize("layout_check", ["kept", "caught"])
def test_the_background_file_is_torch_save_s_written_from_the_snapshot(tmp_path, monkeypatch, layout_check):
    """The default writer in the background writes the layout, then each storage's bytes straight from the
    snapshot: the file holds the records of torch.save's, loads with weights_only=True to the same values, and
    tied tensors stay one. Were the storage order ever wrong, the sizes of the layout catch it and the file is
    written whole by torch.save."""
    from fulmen.checkpoint import io as ckpt_io

    if layout_check == "caught":  # an order that torch's layout contradicts
        real = ckpt_io.storage_order
        monkeypatch.setattr(ckpt_io, "storage_order", lambda checkpoint: real(checkpoint)[::-1])
    state = odd_state()
    writer = AsyncCheckpointIO()
    writer.save_checkpoint(state, tmp_path / "a.ckpt")
    writer.wait()
    torch.save(state, tmp_path / "plain.pt")
    ours = torch._C.PyTorchFileReader(str(tmp_path / "a.ckpt"))
    theirs = torch._C.PyTorchFileReader(str(tmp_path / "plain.pt"))
    records = sorted(r for r in theirs.get_all_records() if r.startswith("data"))
    assert sorted(r for r in ours.get_all_records() if r.startswith("data")) == records  # (the view's is compact)
    loaded = torch.load(tmp_path / "a.ckpt", weights_only=True)
    assert_same(loaded, torch.load(tmp_path / "plain.pt", weights_only=True))
    assert loaded["state_dict"]["tied"] is loaded["state_dict"]["w"]


KILLED_IN_DATA = """
import os, signal, sys, torch
sys.path.insert(0, {root!r})
from fulmen.plugins.io import AsyncCheckpointIO
writer = AsyncCheckpointIO()
writer.save_checkpoint({{"w": torch.full((1000, 1000), 1.0)}}, {path!r})
writer.wait()
real = os.pwrite
def pwrite(fd, data, offset):  # half of the first storage's bytes, then the process dies
    real(fd, memoryview(data)[: len(data) // 2], offset)
    os.kill(os.getpid(), signal.SIGKILL)
os.pwrite = pwrite
writer.save_checkpoint({{"w": torch.full((1000, 1000), 2.0)}}, {path!r})
writer.wait()
"""


def test_a_kill_while_the_bytes_are_written_leaves_the_previous_file(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from fulmen.checkpoint import io as ckpt_io

    path = tmp_path / "last.ckpt"
    code = KILLED_IN_DATA.format(root=str(Path(__file__).resolve().parents[1]), path=str(path))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=BOUND)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.full((1000, 1000), 1.0))
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(ckpt_io.TMP_PREFIX)]
    assert len(leftovers) == 1  # the half-written one, under its temporary name (the next save removes it)
    assert ckpt_io.remove_stale_temporaries(tmp_path) == [str(leftovers[0])]

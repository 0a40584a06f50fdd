"""Checkpoints that are always safe and exact: numpy values in what fulmen saves, what the hooks add (checked before
any file is touched), class paths at any depth of the hyperparameters, torchmetrics states across a SIGKILL, and the
temporary files that a writer killed during a save leaves behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import fulmen as L
from fulmen.callbacks import Callback, ModelCheckpoint
from fulmen.checkpoint import io
from fulmen.demos.boring_classes import BoringModel
from fulmen.utilities.exceptions import SIGTERMException

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "tests" / "resume_scenario.py"
sys.path.insert(0, str(SCENARIO.parent))
from resume_scenario import epoch_losses  # noqa: E402


def _trainer(tmp_path, **kwargs):
    defaults = dict(max_epochs=1, limit_train_batches=4, limit_val_batches=2, enable_progress_bar=False,
                    enable_model_summary=False, logger=False, num_sanity_val_steps=0, default_root_dir=tmp_path)
    defaults.update(kwargs)
    return L.Trainer(**defaults)


# ---------------------------------------------------------------------------------------------- numpy values
class NumpyEverywhere(BoringModel):
    """numpy numbers where users put them: a learning rate from np.logspace, an np.float32 one for a second
    parameter group, numpy hyperparameters, a scheduler whose factor is numpy."""

    def __init__(self, lr: float = np.logspace(-3, -1, 3)[1], decay: float = np.float32(0.01),
                 widths: object = np.array([4, 8])) -> None:
        super().__init__()
        self.save_hyperparameters()

    def configure_optimizers(self):
        opt = torch.optim.SGD([{"params": [self.layer.weight], "lr": self.hparams.lr},
                               {"params": [self.layer.bias], "lr": np.float32(0.05)}],
                              weight_decay=self.hparams.decay)
        return [opt], [torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=np.float64(0.5))]


class NumpyState(Callback):
    """A callback whose state_dict holds numpy values."""

    def __init__(self) -> None:
        self.seen = np.zeros(3)
        self.count = np.int64(0)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seen[batch_idx % 3] += 1
        self.count += 1

    def state_dict(self):
        return {"seen": self.seen, "count": self.count, "scale": np.float32(0.5)}

    def load_state_dict(self, state):
        self.seen, self.count = np.asarray(state["seen"]), int(state["count"])


def test_numpy_values_are_saved_as_numbers_and_tensors(tmp_path):
    """Optimizer, scheduler, hyperparameters and callback states with numpy values: every file loads with
    weights_only=True, a fit resumes from it and load_from_checkpoint gives numbers back (np.float32 too)."""
    trainer = _trainer(tmp_path, callbacks=[NumpyState(), ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)])
    trainer.fit(NumpyEverywhere())
    last = tmp_path / "ck" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    hparams = checkpoint["hyper_parameters"]
    assert type(hparams["lr"]) is float and hparams["lr"] == float(np.logspace(-3, -1, 3)[1])
    assert type(hparams["decay"]) is float and hparams["decay"] == float(np.float32(0.01))
    assert torch.equal(hparams["widths"], torch.tensor([4, 8]))
    groups = checkpoint["optimizer_states"][0]["param_groups"]
    assert [type(g["lr"]) for g in groups] == [float, float]
    state = checkpoint["callbacks"]["NumpyState"]
    assert torch.equal(state["seen"], torch.tensor([2.0, 1.0, 1.0], dtype=torch.float64)) and state["count"] == 4

    model = NumpyEverywhere.load_from_checkpoint(last)
    assert model.hparams.decay == float(np.float32(0.01)) and not isinstance(model.hparams.decay, str)
    resumed = _trainer(tmp_path, max_epochs=2, callbacks=[NumpyState()])
    resumed.fit(NumpyEverywhere(), ckpt_path=last)
    assert resumed.global_step == 8
    assert resumed.optimizers[0].param_groups[0]["lr"] == pytest.approx(float(np.logspace(-3, -1, 3)[1]) * 0.5)


class SigtermAt(Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == 3:
            os.kill(os.getpid(), signal.SIGTERM)


def test_the_checkpoint_written_on_sigterm_holds_numpy_values_as_numbers(tmp_path):
    trainer = _trainer(tmp_path, max_epochs=2, callbacks=[SigtermAt(), NumpyState()])
    with pytest.raises(SIGTERMException):
        trainer.fit(NumpyEverywhere())
    preempted = tmp_path / "checkpoints" / "preempted.ckpt"
    assert torch.load(preempted, weights_only=True)["global_step"] == 3
    again = _trainer(tmp_path, max_epochs=2, callbacks=[NumpyState()])
    again.fit(NumpyEverywhere(), ckpt_path=preempted)
    assert again.global_step == 8


# ---------------------------------------------------------------------------------------------- checked before saving
class RunningStats(BoringModel):
    def on_save_checkpoint(self, checkpoint) -> None:
        checkpoint["running_stats"] = np.ones(3)


class Opaque:
    pass


class OpaqueState(Callback):
    def state_dict(self):
        return {"buffers": [torch.zeros(1), {"thing": Opaque()}]}


@pytest.mark.parametrize("model, callbacks, where, kind", [
    (RunningStats, [], "checkpoint['running_stats']", "numpy.ndarray"),
    (BoringModel, [OpaqueState()], "checkpoint['callbacks']['OpaqueState']['buffers'][1]['thing']",
     "test_safe_checkpoints.Opaque"),
])
def test_a_save_that_would_not_load_safely_is_refused_before_any_file(tmp_path, model, callbacks, where, kind):
    """What a hook puts in the checkpoint is checked: the save raises, naming the key path, the type and the fix,
    and neither the file nor a temporary one is created; a ModelCheckpoint's earlier file stays as it was."""
    trainer = _trainer(tmp_path, callbacks=callbacks, enable_checkpointing=False)
    trainer.fit(model())
    with pytest.raises(TypeError) as info:
        trainer.save_checkpoint(tmp_path / "out" / "x.ckpt")
    message = str(info.value)
    assert where in message and kind.rsplit(".", 1)[-1] in message and "Nothing was written" in message
    assert ("torch.from_numpy" in message) if "numpy" in kind else ("add_safe_globals" in message)
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []


def test_model_checkpoint_keeps_its_last_good_file_when_a_later_save_is_refused(tmp_path):
    class LateStats(BoringModel):
        def on_save_checkpoint(self, checkpoint) -> None:
            if self.current_epoch == 1:
                checkpoint["running_stats"] = np.ones(3)

    folder = tmp_path / "ck"
    trainer = _trainer(tmp_path, max_epochs=2, callbacks=[ModelCheckpoint(dirpath=folder, save_last=True)])
    with pytest.raises(TypeError, match=r"checkpoint\['running_stats'\]"):
        trainer.fit(LateStats())
    assert sorted(os.listdir(folder)) == ["epoch=0-step=4.ckpt", "last.ckpt"]
    assert torch.load(folder / "last.ckpt", weights_only=True)["global_step"] == 4


def test_a_class_registered_as_safe_may_be_saved(tmp_path):
    torch.serialization.add_safe_globals([Opaque])
    try:
        trainer = _trainer(tmp_path, callbacks=[OpaqueState()], enable_checkpointing=False)
        trainer.fit(BoringModel())
        trainer.save_checkpoint(tmp_path / "x.ckpt")
    finally:
        torch.serialization.clear_safe_globals()
    assert (tmp_path / "x.ckpt").exists()


# ---------------------------------------------------------------------------------------------- class paths
_EVIL = """
from pathlib import Path
Path(__file__).with_name("IMPORTED").write_text("the checkpoint ran this module")
class Evil:
    def __init__(self, *args, **kwargs):
        pass
"""

_LOADER = """
import sys, torch
sys.path[:0] = [sys.argv[1], sys.argv[2]]
from typing import Any
from fulmen.demos.boring_classes import BoringModel

class WithBackbone(BoringModel):
    def __init__(self, backbone: Any = None, head: Any = None) -> None:
        super().__init__()

path = sys.argv[1] + "/c.ckpt"
hparams = {"_instantiator": "fulmen.cli.instantiate_module",
           "backbone": {"class_path": "torch.nn.Identity"},
           "head": [{"ok": 1}, {"inner": {"class_path": "evil_mod.Evil", "init_args": {}}}]}
torch.save({"state_dict": WithBackbone().state_dict(), "hyper_parameters": hparams}, path)
try:
    WithBackbone.load_from_checkpoint(path)
    print("LOADED")
except ValueError as err:
    print("REFUSED", err)
if sys.argv[3] == "trusted":
    try:
        WithBackbone.load_from_checkpoint(path, weights_only=False)
    except Exception as err:  # jsonargparse may still reject the evil class's arguments; importing is what we see
        print("ERROR", type(err).__name__)
print("evil_mod" in sys.modules)
"""


@pytest.mark.parametrize("mode", ["safe", "trusted"])
def test_a_nested_class_path_never_imports_a_module(tmp_path, mode):
    """A class_path deep inside the saved hyperparameters (in a list, in a dict) must name an imported class; the
    error names where it is and the opt-in for a trusted file (weights_only=False), which then may import it."""
    (tmp_path / "evil_mod.py").write_text(_EVIL)
    proc = subprocess.run([sys.executable, "-c", _LOADER, str(tmp_path), str(ROOT), mode], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "REFUSED" in out and "'evil_mod.Evil'" in out and "['head'][1]['inner']['class_path']" in out, out
    assert "weights_only=False" in out
    if mode == "safe":
        assert not (tmp_path / "IMPORTED").exists() and out.strip().endswith("False")
    else:
        assert (tmp_path / "IMPORTED").exists()


# ---------------------------------------------------------------------------------------------- torchmetrics, SIGKILL
def _scenario(args, folder, check=True, **env):
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", **{"SCENARIO_METRIC": "1", **env})
    proc = subprocess.run([sys.executable, str(SCENARIO), str(folder), *args], env=full_env, capture_output=True,
                          text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(proc.stderr[-3000:])
    return proc


@pytest.mark.parametrize("kill_at", [5])
def test_a_torchmetrics_epoch_value_resumes_exactly_after_sigkill(tmp_path, kill_at):
    """A MeanMetric logged with on_epoch=True: killed in the middle of an epoch and resumed, its epoch values (and
    the weights) are bitwise those of the run never stopped, as its accumulated state is in the checkpoint."""
    pytest.importorskip("torchmetrics")
    full = tmp_path / "full"
    full.mkdir()
    _scenario([], full)
    killed = _scenario(["--kill-at", str(kill_at)], tmp_path, check=False)
    assert killed.returncode == -signal.SIGKILL
    record = torch.load(tmp_path / "ckpt" / "every-batch.ckpt", weights_only=True)["fulmen"]
    assert record["metric_states"]["loss_mean"]["update_count"] > 0
    _scenario(["--resume"], tmp_path)
    assert epoch_losses(tmp_path, "metric_epochs.txt") == epoch_losses(full, "metric_epochs.txt")
    assert epoch_losses(tmp_path) == epoch_losses(full)
    resumed, expected = torch.load(tmp_path / "final.pt", weights_only=True), torch.load(full / "final.pt")
    for name, value in expected.items():
        assert torch.equal(value, resumed[name]), name


# ---------------------------------------------------------------------------------------------- temporary files
def _temporaries(folder):
    return sorted(n for n in os.listdir(folder) if n.startswith(io.TMP_PREFIX))


def test_a_save_killed_half_way_leaves_a_temporary_file_that_the_next_run_removes(tmp_path):
    """SIGKILL half-way through writing a checkpoint (a real torch.save into the temporary file) leaves a
    `.fulmen-tmp-*.part`; the resumed run's checkpointing removes it, and ends exactly."""
    killed = _scenario(["--fault", "save:4"], tmp_path, check=False, SCENARIO_METRIC="0")
    assert killed.returncode == -signal.SIGKILL
    folder = tmp_path / "ckpt"
    left = _temporaries(folder)
    assert len(left) == 1 and os.path.getsize(folder / left[0]) > 0
    _scenario(["--resume"], tmp_path, SCENARIO_METRIC="0")
    assert _temporaries(folder) == []


_LIVE_WRITER = """
import sys, time, torch
sys.path.insert(0, sys.argv[2])
from fulmen.checkpoint import io
real = torch.save
def slow(obj, f, *args, **kwargs):
    f.write(b"half a checkpoint"); f.flush()
    print("writing", flush=True)
    time.sleep(600)
torch.save = slow
io.atomic_save({"w": torch.zeros(3)}, sys.argv[1])
"""


def test_a_file_that_a_live_process_is_writing_is_never_removed(tmp_path):
    """A process in the middle of a save (alive, writing slowly) keeps its temporary file while another run
    checkpoints into the same folder; once that writer is killed, the next run's checkpointing removes it."""
    folder = tmp_path / "ck"
    folder.mkdir()
    writer = subprocess.Popen([sys.executable, "-c", _LIVE_WRITER, str(folder / "other.ckpt"), str(ROOT)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "writing"
        live = _temporaries(folder)
        assert len(live) == 1
        _trainer(tmp_path, callbacks=[ModelCheckpoint(dirpath=folder)]).fit(BoringModel())
        assert _temporaries(folder) == live  # its writer still runs
    finally:
        writer.kill()
        writer.wait()
    _trainer(tmp_path, callbacks=[ModelCheckpoint(dirpath=folder)]).fit(BoringModel())
    assert _temporaries(folder) == []


def test_a_leftover_without_a_writer_is_removed_on_the_first_save_into_its_folder(tmp_path):
    """A temporary file no process holds (from an older release, or copied) counts as stale too; the first save
    into the folder removes it, even without a ModelCheckpoint."""
    (tmp_path / f"{io.TMP_PREFIX}abc.part").write_bytes(b"x" * 100)
    (tmp_path / "keep.part").write_bytes(b"not ours")
    trainer = _trainer(tmp_path, enable_checkpointing=False)
    trainer.fit(BoringModel())
    trainer.save_checkpoint(tmp_path / "a.ckpt")
    assert _temporaries(tmp_path) == [] and (tmp_path / "keep.part").exists()


@pytest.mark.parametrize("swap", [True, False])
def test_a_checkpoint_folder_replaces_the_old_one_whole(tmp_path, monkeypatch, swap):
    """A sharded checkpoint folder is put in place of the old one of the same name in one step (Linux swaps the two
    names); without a swap (another system or filesystem), the old one steps aside before the new one moves in, so
    no moment leaves both gone. Either way nothing but the new folder remains."""
    if not swap:
        monkeypatch.setattr(io, "_swap", lambda first, second: False)  # a filesystem that cannot exchange names
    target = tmp_path / "epoch=0.ckpt"
    for generation in ("old", "new"):
        staging = tmp_path / f"epoch=0.ckpt.{io.TMP_PREFIX}{generation}"
        staging.mkdir()
        (staging / "shard").write_text(generation)
        io.publish_folder(str(staging), {"generation": generation}, str(target))
        assert (target / "shard").read_text() == generation
        assert io.is_sharded(target) and torch.load(target / io.SHARDED_META, weights_only=True) == {
            "generation": generation}
        assert [p.name for p in tmp_path.iterdir()] == ["epoch=0.ckpt"]
    file_target = tmp_path / "plain.ckpt"  # a single-file checkpoint of that name is replaced too
    file_target.write_bytes(b"x")
    staging = tmp_path / f"plain.ckpt.{io.TMP_PREFIX}x"
    staging.mkdir()
    io.publish_folder(str(staging), {}, str(file_target))
    assert io.is_sharded(file_target)


def test_an_unfinished_checkpoint_folder_goes_only_when_its_writer_is_gone(tmp_path):
    """A sharded checkpoint folder is written under a name that tells its machine and process. Killed before it
    was whole, it is removed by the next sweep of its folder; a folder whose writer lives, or that holds its
    meta.ckpt (whole: it may be the newest checkpoint), or of another machine, stays."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    host = io.staging_folder("x").split(io.TMP_PREFIX)[1].split("-")[0]

    def folder(name, pid, host=host, whole=False):
        path = tmp_path / f"{name}.ckpt.{io.TMP_PREFIX}{host}-{pid}-0123abcd"
        path.mkdir()
        (path / "__0_0.distcp").write_bytes(b"shard")
        if whole:
            torch.save({}, path / io.SHARDED_META)
        return path

    killed = folder("a", dead_pid)
    live = folder("b", os.getppid())  # this test's parent process runs
    whole = folder("c", dead_pid, whole=True)
    elsewhere = folder("d", dead_pid, host="another_machine")
    ours = tmp_path / os.path.basename(io.staging_folder(str(tmp_path / "e.ckpt")))  # being written by this process
    ours.mkdir()
    assert io.remove_stale_temporaries(tmp_path) == [str(killed)]
    assert not killed.exists() and live.exists() and whole.exists() and elsewhere.exists() and ours.exists()

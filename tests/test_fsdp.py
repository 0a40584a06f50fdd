"""FSDP (fully_shard) with real processes on the CPU: the weights of one process, checkpoints whole and sharded,
a sharded checkpoint of 2 processes loading on 1 and on 2, and an exact resume after a preemption."""

from __future__ import annotations

import pytest
import torch

from fulmen.checkpoint import io
from fulmen.strategies.fsdp import FSDPStrategy
from fulmen.utilities.exceptions import MisconfigurationException
from tests.ddp_scenario import Net
from tests.test_ddp import NOISY, one_process, run  # noqa: F401 (one_process is a fixture)


@pytest.mark.parametrize("kind, background", [("full", False), ("sharded", False), ("full", True), ("sharded", True)])
def test_two_sharded_processes_match_one_process(tmp_path, one_process, kind, background):  # noqa: F811
    # background: AsyncCheckpointIO (a sharded folder is then written by torch.distributed.checkpoint in each
    # rank's writer thread, and put in place by rank 0 once complete)
    proc = run(tmp_path, "--devices", 2, "--batch", 8, "--fsdp", kind, *(["--async"] if background else []))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = torch.load(tmp_path / "result.pt", weights_only=True)
    torch.testing.assert_close(result["weights"], one_process["weights"], rtol=0, atol=1e-6)
    assert result["metrics"] == pytest.approx(one_process["metrics"], abs=1e-6)
    saved = tmp_path / "checkpoints" / "epoch=2-step=12.ckpt"
    assert saved.is_dir() == (kind == "sharded") and io.is_sharded(saved) == (kind == "sharded")
    assert sorted(p.name for p in saved.parent.iterdir()) == ["epoch=2-step=12.ckpt"]  # no staging folder left
    checkpoint = io.load(saved)  # read whole, in this one process, without a process group
    torch.testing.assert_close(checkpoint["state_dict"], result["weights"], rtol=0, atol=0)
    params = checkpoint["optimizer_states"][0]["param_groups"][0]["params"]
    assert params == ["net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias"]  # keyed by parameter name
    args = type("Args", (), {"noisy": False, "unused": False})()
    loaded = Net.load_from_checkpoint(saved, args=args)
    torch.testing.assert_close(loaded.state_dict(), result["weights"], rtol=0, atol=0)


@pytest.fixture(scope="module")
def noisy_weights(tmp_path_factory):
    """The final weights of a sharded run never stopped (dropout, shuffling, accumulation: exact resume needs
    every rank's random states)."""
    full = tmp_path_factory.mktemp("full")
    proc = run(full, *NOISY, "--fsdp", "sharded")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(full / "result.pt", weights_only=True)["weights"]


def assert_same_weights(expected, folder):
    got = torch.load(folder / "result.pt", weights_only=True)["weights"]
    for name, value in expected.items():
        assert torch.equal(value, got[name]), name


def test_sharded_checkpoint_resumes_exactly_on_two_and_loads_on_one(tmp_path, noisy_weights):
    stopped = run(tmp_path, *NOISY, "--fsdp", "sharded", "--signal-rank", 1, "--fail-at", 2, timeout=600)
    assert stopped.returncode == 1 and "saved checkpoint" in stopped.stderr
    assert io.is_sharded(tmp_path / "checkpoints" / "preempted.ckpt")
    resumed = run(tmp_path, *NOISY, "--fsdp", "sharded", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_weights(noisy_weights, tmp_path)
    # The same folder on one process: it loads and trains on (inexactly: the per-rank states fit two ranks).
    single = tmp_path / "single"
    (single / "checkpoints").mkdir(parents=True)
    import shutil

    shutil.copytree(tmp_path / "checkpoints" / "preempted.ckpt", single / "checkpoints" / "preempted.ckpt")
    one = run(single, "--devices", 1, "--batch", 4, "--samples", 512, "--noisy", "--accumulate", 3, "--resume")
    assert one.returncode == 0, one.stderr[-3000:]
    assert (single / "result.pt").exists()


def test_a_kill_during_a_background_sharded_write_keeps_the_previous_folder_and_resumes_exactly(tmp_path,
                                                                                              noisy_weights):
    """AsyncCheckpointIO: each save returns before its folder is in place (the writer threads write the shards
    with torch.distributed.checkpoint); rank 0 SIGKILLed in the second write, with every shard written but the
    folder not yet put in place, leaves the first checkpoint whole (its deletion waited for the second), and the
    run resumes from it to the weights of a run never stopped."""
    killed = run(tmp_path, *NOISY, "--fsdp", "sharded", "--async", "--kill-in-write", 2)
    assert killed.returncode != 0
    folder = tmp_path / "checkpoints"
    names = sorted(p.name for p in folder.iterdir())
    assert names[0] == "epoch=0-step=22.ckpt" and len(names) == 2, names
    assert names[1].startswith("epoch=1-step=44.ckpt." + io.TMP_PREFIX)  # the unfinished folder, under its own name
    assert io.is_sharded(folder / names[0]) and not io.is_sharded(folder / names[1])
    io.load(folder / names[0])
    notes = [line for note in tmp_path.glob("writes-*.txt") for line in note.read_text().split()]
    assert notes and set(notes) == {"False"}  # no save waited for its write
    resumed = run(tmp_path, *NOISY, "--fsdp", "sharded", "--async", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_weights(noisy_weights, tmp_path)
    # The resumed run removed the unfinished folder (its writer is gone); the checkpoint resumed from stays, as
    # Lightning keeps it.
    assert sorted(p.name for p in folder.iterdir()) == ["epoch=0-step=22.ckpt", "epoch=2-step=66.ckpt"]


def test_bad_fsdp_settings(monkeypatch):
    with pytest.raises(ValueError, match="sharding_strategy='NO_SHARD'.*use strategy='ddp'"):
        FSDPStrategy(sharding_strategy="NO_SHARD")
    with pytest.raises(ValueError, match="state_dict_type='local'"):
        FSDPStrategy(state_dict_type="local")
    with pytest.raises(TypeError, match="limit_all_gathers"):
        FSDPStrategy(limit_all_gathers=True)
    import fulmen
    from fulmen.plugins import MixedPrecision

    from fulmen.accelerators import devices

    monkeypatch.setattr(devices, "mps_available", lambda: True)
    with pytest.raises(MisconfigurationException, match="cannot shard on Apple's MPS"):
        fulmen.Trainer(strategy="fsdp", accelerator="mps")
    with pytest.raises(MisconfigurationException, match="'16-mixed' is not supported.*use precision='bf16-mixed'"):
        fulmen.Trainer(strategy=FSDPStrategy(), accelerator="cpu", devices=2,
                       plugins=[MixedPrecision("16-mixed", "cpu")])

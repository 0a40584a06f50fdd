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


@pytest.mark.parametrize("kind", ["full", "sharded"])
def test_two_sharded_processes_match_one_process(tmp_path, one_process, kind):  # noqa: F811
    proc = run(tmp_path, "--devices", 2, "--batch", 8, "--fsdp", kind)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = torch.load(tmp_path / "result.pt", weights_only=True)
    torch.testing.assert_close(result["weights"], one_process["weights"], rtol=0, atol=1e-6)
    assert result["metrics"] == pytest.approx(one_process["metrics"], abs=1e-6)
    saved = tmp_path / "checkpoints" / "epoch=2-step=12.ckpt"
    assert saved.is_dir() == (kind == "sharded") and io.is_sharded(saved) == (kind == "sharded")
    checkpoint = io.load(saved)  # read whole, in this one process, without a process group
    torch.testing.assert_close(checkpoint["state_dict"], result["weights"], rtol=0, atol=0)
    params = checkpoint["optimizer_states"][0]["param_groups"][0]["params"]
    assert params == ["net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias"]  # keyed by parameter name
    args = type("Args", (), {"noisy": False, "unused": False})()
    loaded = Net.load_from_checkpoint(saved, args=args)
    torch.testing.assert_close(loaded.state_dict(), result["weights"], rtol=0, atol=0)


def test_sharded_checkpoint_resumes_exactly_on_two_and_loads_on_one(tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    assert run(full, *NOISY, "--fsdp", "sharded").returncode == 0
    stopped = run(tmp_path, *NOISY, "--fsdp", "sharded", "--signal-rank", 1, "--fail-at", 2, timeout=600)
    assert stopped.returncode == 1 and "saved checkpoint" in stopped.stderr
    assert io.is_sharded(tmp_path / "checkpoints" / "preempted.ckpt")
    resumed = run(tmp_path, *NOISY, "--fsdp", "sharded", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected = torch.load(full / "result.pt", weights_only=True)["weights"]
    got = torch.load(tmp_path / "result.pt", weights_only=True)["weights"]
    for name, value in expected.items():
        assert torch.equal(value, got[name]), name
    # The same folder on one process: it loads and trains on (inexactly: the per-rank states fit two ranks).
    single = tmp_path / "single"
    (single / "checkpoints").mkdir(parents=True)
    import shutil

    shutil.copytree(tmp_path / "checkpoints" / "preempted.ckpt", single / "checkpoints" / "preempted.ckpt")
    one = run(single, "--devices", 1, "--batch", 4, "--samples", 512, "--noisy", "--accumulate", 3, "--resume")
    assert one.returncode == 0, one.stderr[-3000:]
    assert (single / "result.pt").exists()


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

"""DeepSpeed: the configuration mapping (without the deepspeed package), and real 2-process runs of its engine on the
CPU: the weights of one process at ZeRO stages 1 to 3, checkpoint folders, and an exact resume."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

import fulmen
from fulmen.checkpoint import io
from fulmen.strategies.deepspeed import DeepSpeedStrategy, complete_config, deepspeed_config
from fulmen.strategies.registry import _DEEPSPEED_VARIANTS as REGISTRY
from fulmen.utilities.exceptions import MisconfigurationException
from tests.ddp_scenario import Net
from tests.test_ddp import NOISY, one_process, run  # noqa: F401 (one_process is a fixture)


@pytest.mark.parametrize("name, stage, optimizer, params", [
    ("deepspeed", 2, None, None), ("deepspeed_stage_1", 1, None, None), ("deepspeed_stage_2", 2, None, None),
    ("deepspeed_stage_2_offload", 2, "cpu", None), ("deepspeed_stage_3", 3, None, None),
    ("deepspeed_stage_3_offload", 3, "cpu", "cpu"), ("deepspeed_stage_3_offload_nvme", 3, "nvme", "nvme"),
])
def test_registry_names_map_to_zero_settings(name, stage, optimizer, params):
    zero = deepspeed_config(**REGISTRY[name])["zero_optimization"]
    assert zero["stage"] == stage
    assert zero.get("offload_optimizer", {}).get("device") == optimizer
    assert zero.get("offload_param", {}).get("device") == params
    assert zero["contiguous_gradients"] and zero["reduce_bucket_size"] == 200_000_000


def test_arguments_reach_the_config():
    config = deepspeed_config(stage=3, offload_parameters=True, params_buffer_count=7, pin_memory=True,
                              partition_activations=True, queue_depth=4, zero_allow_untested_optimizer=False)
    assert config["zero_optimization"]["offload_param"] == {
        "device": "cpu", "nvme_path": "/local_nvme", "buffer_count": 7, "buffer_size": 100_000_000,
        "max_in_cpu": 1_000_000_000, "pin_memory": True}
    assert config["activation_checkpointing"]["partition_activations"] and config["aio"]["queue_depth"] == 4
    assert config["zero_allow_untested_optimizer"] is False
    assert "zero_optimization" not in deepspeed_config(zero_optimization=False)


def test_trainer_settings_complete_the_config():
    config = complete_config(deepspeed_config(loss_scale=128), precision="16-mixed", accumulate_grad_batches=4,
                             gradient_clip_val=0.5, batch_size=32)
    assert config["gradient_accumulation_steps"] == 4 and config["gradient_clipping"] == 0.5
    assert config["train_micro_batch_size_per_gpu"] == 32
    assert config["fp16"]["enabled"] and config["fp16"]["loss_scale"] == 128 and "_fulmen" not in config
    bf16 = complete_config(deepspeed_config(logging_batch_size_per_gpu=2), "bf16-mixed", 1, None, 32)
    assert bf16["bf16"] == {"enabled": True} and bf16["train_micro_batch_size_per_gpu"] == 2
    assert "gradient_clipping" not in bf16 and "fp16" not in bf16


def test_a_config_file_or_dict_is_used_as_it_is(tmp_path, monkeypatch):
    own = {"zero_optimization": {"stage": 1}, "train_micro_batch_size_per_gpu": 8}
    (tmp_path / "ds.json").write_text(json.dumps(own))
    assert deepspeed_config(tmp_path / "ds.json") == own
    assert deepspeed_config(own) == own
    monkeypatch.setenv("PL_DEEPSPEED_CONFIG_PATH", str(tmp_path / "ds.json"))
    assert deepspeed_config() == own
    done = complete_config(own, "32-true", 2, None, 64)
    assert done["train_micro_batch_size_per_gpu"] == 8  # the file's own value stays
    with pytest.raises(MisconfigurationException, match="gradient_accumulation_steps=3.*accumulate_grad_batches=2"):
        complete_config({"gradient_accumulation_steps": 3}, "32-true", 2, None, 8)


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(stage=4), ValueError, "stage=4"),
    (dict(offload_optimizer_device="disk"), ValueError, "offload_optimizer_device='disk'"),
    (dict(stage=2, offload_parameters=True), ValueError, "offload_parameters=True\\) needs stage=3"),
    (dict(zero_stage=2), TypeError, "zero_stage"),
    (dict(config="missing.json"), MisconfigurationException, "config='missing.json'\\): no such file"),
    (dict(config=3), TypeError, "config=3"),
])
def test_bad_arguments(kwargs, error, words):
    with pytest.raises(error, match=words):
        deepspeed_config(**kwargs)


def test_without_deepspeed_the_extra_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "deepspeed", None)
    with pytest.raises(ModuleNotFoundError, match=r"fulmen\[deepspeed\]"):
        fulmen.Trainer(strategy="deepspeed_stage_3", logger=False)


# ---------------------------------------------------------------------------------------------- the engine
# Real runs: DeepSpeed's engine with 2 processes on the CPU (its CPU accelerator, gloo), through fulmen's launcher.
needs_deepspeed = pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed not installed")


@needs_deepspeed
def test_the_shared_memory_op_was_built_at_install():
    """The engine on the CPU loads DeepSpeed's shared-memory op. Built by the install step (the Makefile), it is
    imported; otherwise DeepSpeed would JIT-compile it inside a test, slowly, under a lock file that a killed build
    leaves behind for every later test to wait on."""
    spec = importlib.util.find_spec("deepspeed")
    info = {}
    exec((Path(spec.origin).parent / "git_version_info_installed.py").read_text(), info)
    assert info["installed_ops"].get("deepspeed_shm_comm"), (
        "deepspeed was installed without its CPU shared-memory op; install it as the Makefile does: "
        "DS_ACCELERATOR=cpu DS_BUILD_OPS=0 DS_BUILD_SHM_COMM=1 pip install --no-cache-dir --no-build-isolation "
        "deepspeed")


@needs_deepspeed
@pytest.mark.parametrize("stage", [1, 2, 3])
def test_two_processes_match_one_process(tmp_path, one_process, stage):  # noqa: F811
    proc = run(tmp_path, "--devices", 2, "--batch", 8, "--deepspeed", stage, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = torch.load(tmp_path / "result.pt", weights_only=True)
    torch.testing.assert_close(result["weights"], one_process["weights"], rtol=0, atol=1e-6)
    assert result["metrics"] == pytest.approx(one_process["metrics"], abs=1e-6)
    saved = tmp_path / "checkpoints" / "epoch=2-step=12.ckpt"
    assert io.is_sharded(saved) and (saved / "engine").is_dir()
    meta = torch.load(saved / "meta.ckpt", weights_only=True)  # all but the engine's files: plain data
    torch.testing.assert_close(meta["state_dict"], result["weights"], rtol=0, atol=0)
    assert meta["optimizer_states"] == [{"deepspeed_engine": True}]
    args = type("Args", (), {"noisy": False, "unused": False})()
    loaded = Net.load_from_checkpoint(saved, args=args)  # the weights load safely, without the engine
    torch.testing.assert_close(loaded.state_dict(), result["weights"], rtol=0, atol=0)


@needs_deepspeed
def test_zero_offload_of_the_optimizer_and_the_parameters(tmp_path, one_process):  # noqa: F811
    """ZeRO-3 with the optimizer state and the parameters offloaded to the host, from a DeepSpeed config dict used
    as it is: the weights of one process, and a checkpoint folder."""
    proc = run(tmp_path, "--devices", 2, "--batch", 8, "--deepspeed", 3, "--offload", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = torch.load(tmp_path / "result.pt", weights_only=True)
    torch.testing.assert_close(result["weights"], one_process["weights"], rtol=0, atol=1e-6)
    assert (tmp_path / "checkpoints" / "epoch=2-step=12.ckpt" / "engine").is_dir()


@needs_deepspeed
@pytest.mark.parametrize("stage", [2])
def test_manual_optimization_steps_through_the_engine(tmp_path, one_process, stage):  # noqa: F811
    """manual_backward runs the engine's backward and optimizer.step() its step: the same weights as the automatic
    one-process run."""
    proc = run(tmp_path, "--devices", 2, "--batch", 8, "--deepspeed", stage, "--manual", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = torch.load(tmp_path / "checkpoints" / "epoch=2-step=12.ckpt" / "meta.ckpt", weights_only=True)
    torch.testing.assert_close(meta["state_dict"], one_process["weights"], rtol=0, atol=1e-6)


@needs_deepspeed
def test_bf16_mixed_keeps_bfloat16_weights_and_trains_as_float32(tmp_path, one_process):  # noqa: F811
    proc = run(tmp_path, "--devices", 2, "--batch", 8, "--deepspeed", 2, "--precision", "bf16-mixed", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = torch.load(tmp_path / "checkpoints" / "epoch=2-step=12.ckpt" / "meta.ckpt", weights_only=True)
    assert {w.dtype for w in meta["state_dict"].values()} == {torch.bfloat16}  # DeepSpeed's bf16 weights
    for name, value in one_process["weights"].items():  # float32 master weights: close to the float32 run
        torch.testing.assert_close(meta["state_dict"][name].float(), value, rtol=0, atol=2e-2)


@needs_deepspeed
def test_a_stop_inside_an_accumulation_window_resumes_exactly(tmp_path):
    """ZeRO keeps a window's gradients in its own buffers: a SIGTERM inside a window stops at the window's end, and
    the resumed run ends with the very weights of a run never stopped. Resuming needs the opt-in to the engine's
    pickled files."""
    ds = (*NOISY, "--deepspeed", 2)
    full = tmp_path / "full"
    full.mkdir()
    assert run(full, *ds, timeout=600).returncode == 0
    stopped = run(tmp_path, *ds, "--signal-rank", 1, "--fail-at", 2, timeout=600)
    assert stopped.returncode == 1 and "saved checkpoint" in stopped.stderr
    # The ranks agree on the stop after 32 batches (the exchange started at 16 is read at 32), inside a window of
    # 3: the stop waits for the 33rd batch, the window's end, at global step 11.
    assert "global step 11;" in stopped.stderr, stopped.stderr[-2000:]
    refused = run(tmp_path, *ds, "--resume", "--untrusted", timeout=600)
    assert refused.returncode == 1 and "pass weights_only=False to fit" in refused.stderr, refused.stderr[-2000:]
    resumed = run(tmp_path, *ds, "--resume", timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected = torch.load(full / "result.pt", weights_only=True)["weights"]
    got = torch.load(tmp_path / "result.pt", weights_only=True)["weights"]
    for name, value in expected.items():
        assert torch.equal(value, got[name]), name


@needs_deepspeed
def test_what_the_engine_does_not_run():
    strategy = DeepSpeedStrategy(stage=2)
    with pytest.raises(MisconfigurationException, match="precision='16-mixed'.*use '32-true' or 'bf16-mixed'"):
        strategy.check_precision("16-mixed")
    strategy.check_precision("bf16-mixed")
    with pytest.raises(MisconfigurationException, match="runs on CUDA GPUs or the CPU.*mps"):
        strategy.configure("mps", [0], 1)

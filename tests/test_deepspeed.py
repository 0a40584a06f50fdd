"""The DeepSpeed configuration mapping, without the deepspeed package (which needs CUDA to train)."""

from __future__ import annotations

import json
import sys

import pytest

import fulmen
from fulmen.strategies.deepspeed import REGISTRY, complete_config, deepspeed_config
from fulmen.utilities.exceptions import MisconfigurationException


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

"""DeepSpeed: the configuration Lightning's DeepSpeedStrategy builds from its arguments and the Trainer's settings.

``deepspeed_config`` maps the strategy's arguments to a DeepSpeed configuration dict (ZeRO stage, offloading, the
asynchronous I/O settings, activation checkpointing), as Lightning does; ``complete_config`` adds what comes from
the Trainer (micro-batch size, gradient accumulation, clipping, precision). Both are plain functions, tested without
the deepspeed package. ``DeepSpeedStrategy`` checks that deepspeed is installed and that the run is on CUDA; the
training engine itself (``deepspeed.initialize``) is not wired into fulmen's loops yet, and says so.
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional, Union

from fulmen.utilities.exceptions import MisconfigurationException

# Lightning's registry: name -> arguments of DeepSpeedStrategy.
REGISTRY: dict[str, dict[str, Any]] = {
    "deepspeed": {},
    "deepspeed_stage_1": {"stage": 1},
    "deepspeed_stage_2": {"stage": 2},
    "deepspeed_stage_2_offload": {"stage": 2, "offload_optimizer": True},
    "deepspeed_stage_3": {"stage": 3},
    "deepspeed_stage_3_offload": {"stage": 3, "offload_optimizer": True, "offload_parameters": True},
    "deepspeed_stage_3_offload_nvme": {"stage": 3, "offload_optimizer": True, "offload_parameters": True,
                                       "remote_device": "nvme", "offload_params_device": "nvme",
                                       "offload_optimizer_device": "nvme"},
}

DEFAULTS: dict[str, Any] = dict(
    zero_optimization=True, stage=2, remote_device=None, offload_optimizer=False, offload_parameters=False,
    offload_params_device="cpu", nvme_path="/local_nvme", params_buffer_count=5, params_buffer_size=100_000_000,
    max_in_cpu=1_000_000_000, offload_optimizer_device="cpu", optimizer_buffer_count=4, block_size=1048576,
    queue_depth=8, single_submit=False, overlap_events=True, thread_count=1, pin_memory=False,
    sub_group_size=1_000_000_000_000, contiguous_gradients=True, overlap_comm=True, allgather_partitions=True,
    reduce_scatter=True, allgather_bucket_size=200_000_000, reduce_bucket_size=200_000_000,
    zero_allow_untested_optimizer=True, logging_batch_size_per_gpu="auto", partition_activations=False,
    cpu_checkpointing=False, contiguous_memory_optimization=False, synchronize_checkpoint_boundary=False,
    loss_scale=0, initial_scale_power=16, loss_scale_window=1000, hysteresis=2, min_loss_scale=1,
)
_DEVICES = ("cpu", "nvme")


def deepspeed_config(config: Union[None, str, os.PathLike[str], dict[str, Any]] = None,
                     **arguments: Any) -> dict[str, Any]:
    """The DeepSpeed configuration: ``config`` itself (a dict, or the path of a JSON file; also read from the
    ``PL_DEEPSPEED_CONFIG_PATH`` environment variable), else one built from DeepSpeedStrategy's ``arguments``."""
    unknown = sorted(set(arguments) - set(DEFAULTS))
    if unknown:
        raise TypeError(f"DeepSpeedStrategy got arguments it does not know: {unknown}")
    if config is None and "PL_DEEPSPEED_CONFIG_PATH" in os.environ:
        config = os.environ["PL_DEEPSPEED_CONFIG_PATH"]
    if isinstance(config, (str, os.PathLike)):
        path = os.fspath(config)
        if not os.path.isfile(path):
            raise MisconfigurationException(f"DeepSpeedStrategy(config={path!r}): no such file; pass the path of a "
                                            "DeepSpeed JSON configuration, or a dict")
        with open(path) as f:
            return json.load(f)
    if isinstance(config, dict):
        return dict(config)
    if config is not None:
        raise TypeError(f"DeepSpeedStrategy(config={config!r}) must be a dict, the path of a JSON file, or None")
    a = {**DEFAULTS, **arguments}
    if a["stage"] not in (0, 1, 2, 3):
        raise ValueError(f"DeepSpeedStrategy(stage={a['stage']!r}) must be 0, 1, 2 or 3")
    for name in ("offload_params_device", "offload_optimizer_device"):
        if a[name] not in _DEVICES:
            raise ValueError(f"DeepSpeedStrategy({name}={a[name]!r}) must be 'cpu' or 'nvme'")
    if a["offload_parameters"] and a["stage"] != 3:
        raise ValueError("DeepSpeedStrategy(offload_parameters=True) needs stage=3: only ZeRO-3 partitions the "
                         f"parameters (stage={a['stage']})")
    out: dict[str, Any] = {
        "activation_checkpointing": {
            "partition_activations": a["partition_activations"], "cpu_checkpointing": a["cpu_checkpointing"],
            "contiguous_memory_optimization": a["contiguous_memory_optimization"],
            "synchronize_checkpoint_boundary": a["synchronize_checkpoint_boundary"],
        },
        "aio": {"block_size": a["block_size"], "queue_depth": a["queue_depth"], "single_submit": a["single_submit"],
                "overlap_events": a["overlap_events"], "thread_count": a["thread_count"]},
    }
    if a["zero_optimization"]:
        zero: dict[str, Any] = {
            "stage": a["stage"], "contiguous_gradients": a["contiguous_gradients"], "overlap_comm": a["overlap_comm"],
            "allgather_partitions": a["allgather_partitions"], "reduce_scatter": a["reduce_scatter"],
            "allgather_bucket_size": a["allgather_bucket_size"], "reduce_bucket_size": a["reduce_bucket_size"],
            "sub_group_size": a["sub_group_size"],
        }
        if a["offload_optimizer"]:
            zero["offload_optimizer"] = {"device": a["offload_optimizer_device"], "nvme_path": a["nvme_path"],
                                         "buffer_count": a["optimizer_buffer_count"], "pin_memory": a["pin_memory"]}
        if a["offload_parameters"]:
            zero["offload_param"] = {"device": a["offload_params_device"], "nvme_path": a["nvme_path"],
                                     "buffer_count": a["params_buffer_count"], "buffer_size": a["params_buffer_size"],
                                     "max_in_cpu": a["max_in_cpu"], "pin_memory": a["pin_memory"]}
        out["zero_optimization"] = zero
        out["zero_allow_untested_optimizer"] = a["zero_allow_untested_optimizer"]
    out["_fulmen"] = {k: a[k] for k in ("logging_batch_size_per_gpu", "loss_scale", "initial_scale_power",
                                       "loss_scale_window", "hysteresis", "min_loss_scale")}
    return out


def complete_config(config: dict[str, Any], precision: str, accumulate_grad_batches: int,
                    gradient_clip_val: Optional[float], batch_size: Optional[int]) -> dict[str, Any]:
    """Add what the Trainer decides, where the configuration does not already say it: micro-batch size (from the
    train loader when "auto"), gradient accumulation, clipping, and fp16 (with the loss-scaling arguments) or bf16."""
    out = {k: v for k, v in config.items() if k != "_fulmen"}
    extra = config.get("_fulmen", {})
    if "gradient_accumulation_steps" in out and out["gradient_accumulation_steps"] != accumulate_grad_batches:
        raise MisconfigurationException(
            f"The DeepSpeed configuration sets gradient_accumulation_steps={out['gradient_accumulation_steps']}, and "
            f"Trainer(accumulate_grad_batches={accumulate_grad_batches}); set it in one place")
    out["gradient_accumulation_steps"] = accumulate_grad_batches
    if "train_micro_batch_size_per_gpu" not in out:
        size = extra.get("logging_batch_size_per_gpu", "auto")
        out["train_micro_batch_size_per_gpu"] = batch_size if size == "auto" and batch_size else (
            size if size != "auto" else 1)
    if gradient_clip_val and "gradient_clipping" not in out:
        out["gradient_clipping"] = gradient_clip_val
    if precision in ("16-mixed", "16-true") and "fp16" not in out:
        out["fp16"] = {"enabled": True, "loss_scale": extra.get("loss_scale", 0),
                       "initial_scale_power": extra.get("initial_scale_power", 16),
                       "loss_scale_window": extra.get("loss_scale_window", 1000),
                       "hysteresis": extra.get("hysteresis", 2), "min_loss_scale": extra.get("min_loss_scale", 1)}
    elif precision in ("bf16-mixed", "bf16-true") and "bf16" not in out:
        out["bf16"] = {"enabled": True}
    return out


class DeepSpeedStrategy:
    """Lightning's DeepSpeedStrategy arguments (see ``DEFAULTS``), and ``config`` (a dict or a JSON file)."""

    strategy_name = "deepspeed"

    def __init__(self, accelerator: Any = None, config: Union[None, str, os.PathLike[str], dict[str, Any]] = None,
                 **arguments: Any) -> None:
        for ignored in ("logging_level", "parallel_devices", "cluster_environment", "precision_plugin",
                        "process_group_backend", "timeout", "load_full_weights", "exclude_frozen_parameters"):
            arguments.pop(ignored, None)
        self.config = deepspeed_config(config, **arguments)
        try:
            import deepspeed  # noqa: F401
        except ImportError as err:
            raise ModuleNotFoundError("DeepSpeedStrategy needs the deepspeed package (and CUDA): pip install "
                                      "'fulmen[deepspeed]' --no-build-isolation") from err

    def configure(self, accelerator: str, device_ids: list[int], num_nodes: int) -> None:
        if accelerator != "cuda":
            raise MisconfigurationException(f"DeepSpeedStrategy runs on CUDA GPUs, and this run is on {accelerator}; "
                                            "use strategy='ddp' or 'fsdp'")
        raise MisconfigurationException(
            "DeepSpeedStrategy: this fulmen version maps the DeepSpeed configuration but does not run the DeepSpeed "
            "engine yet; use strategy='fsdp' (ZeRO-3-like sharding) or 'ddp'")

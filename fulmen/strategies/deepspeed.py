"""DeepSpeed: the configuration Lightning's DeepSpeedStrategy builds from its arguments and the Trainer's settings.

``deepspeed_config`` maps the strategy's arguments to a DeepSpeed configuration dict (ZeRO stage, offloading, the
asynchronous I/O settings, activation checkpointing), as Lightning does; ``complete_config`` adds what comes from
the Trainer (micro-batch size, gradient accumulation, clipping, precision). Both are plain functions, tested without
the deepspeed package. ``DeepSpeedStrategy`` runs the training through DeepSpeed's engine (``deepspeed.initialize``).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

import torch
from torch import nn
from typing_extensions import override

from fulmen.checkpoint.io import ENGINE_FOLDER, ENGINE_STATE
from fulmen.core.step import NO_CONTEXT, begin_training_step, training_step_loss
from fulmen.strategies.ddp import StepRunner
from fulmen.strategies.parallel import ParallelStrategy
from fulmen.utilities.exceptions import MisconfigurationException

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer

# Lightning's registry: name -> arguments of DeepSpeedStrategy.
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
_TAG = "checkpoint"


def remove_module_hooks(model: nn.Module) -> None:
    """Take every forward, backward and state-dict hook off ``model`` and its submodules (DeepSpeed's ZeRO-3 adds
    its own, which a module used after the engine must lose)."""
    from collections import OrderedDict

    for module in model.modules():
        module._backward_hooks = OrderedDict()
        module._is_full_backward_hook = None
        module._forward_hooks = OrderedDict()
        module._forward_pre_hooks = OrderedDict()
        module._state_dict_hooks = OrderedDict()
        module._load_state_dict_pre_hooks = OrderedDict()


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


def engine_step(trainer: "Trainer", batch: Any, batch_idx: int, zero_grad: bool, step: bool) -> Any:
    """The automatic step under DeepSpeed: training_step through the engine's forward, then the engine's backward
    (which divides the loss by the accumulation count) and its step, which updates the weights only at the end of
    an accumulation window (``step``; the engine is told so, rather than counting batches itself, so that the
    windows are the Trainer's, short last window of an epoch included)."""
    strategy = trainer.strategy
    assert isinstance(strategy, DeepSpeedStrategy)  # (this is its automatic_step)
    engine = strategy.engine
    hooks = trainer._hooks
    optimizer = trainer.optimizers[0]
    engine.set_gradient_accumulation_boundary(step)
    with begin_training_step(trainer) or NO_CONTEXT:
        output = trainer._training_step(batch, batch_idx)
    loss, outputs = training_step_loss(output, 1, trainer._wants_outputs)
    if loss is None:
        raise MisconfigurationException("Under DeepSpeedStrategy, training_step must return a loss: the engine "
                                        "counts every batch of an accumulation window (returning None skips one)")
    if zero_grad:
        hooks.on_before_zero_grad(optimizer)  # (the engine clears the gradients itself after each update)
    strategy.manual_backward(trainer, loss)
    if step:
        hooks.on_before_optimizer_step(optimizer)
    engine.step()
    if step:
        trainer.state.global_step += 1
    return outputs


class DeepSpeedStrategy(ParallelStrategy):
    """ZeRO data parallelism through the deepspeed package, with Lightning's DeepSpeedStrategy arguments.

    Args:
        accelerator: accepted for Lightning's signature; the Trainer's accelerator is used.
        config: a DeepSpeed configuration (a dict, or the path of a JSON file) used as it is; without one, it is
            built from the other arguments (see ``DEFAULTS``: stage, offload_optimizer, offload_parameters, ...).
        logging_level: the level of DeepSpeed's own logger.
        parallel_devices: as for DDPStrategy.
        cluster_environment: as for DDPStrategy.
        process_group_backend: as for DDPStrategy.
        timeout: as for DDPStrategy.
        **arguments: DeepSpeedStrategy's configuration arguments (``DEFAULTS``).

    The engine (``deepspeed.initialize``) wraps the module and the optimizer from ``configure_optimizers``; it runs
    backward (scaling the loss for gradient accumulation), clips by the configuration's ``gradient_clipping``
    (``Trainer(gradient_clip_val=...)``) and steps at the end of each accumulation window. One optimizer. Under
    manual optimization ``self.manual_backward(loss)`` runs the engine's backward and ``optimizer.step()`` its
    step (clipping by the configuration's ``gradient_clipping``). DeepSpeed runs on CUDA GPUs, and on the CPU with
    its CPU accelerator (gloo).

    Checkpoints are folders: ``meta.ckpt`` (everything fulmen saves, the whole weights included, readable with
    ``torch.load(weights_only=True)`` and by ``load_from_checkpoint``) and ``engine/`` (the engine's own files:
    each rank's ZeRO optimizer partition). Resuming reads the engine's files, which hold pickled objects, so it
    needs ``fit(..., weights_only=False)``: only for folders you trust.
    """

    strategy_name = "deepspeed"
    automatic_step = staticmethod(engine_step)
    holds_window_gradients = True  # ZeRO keeps an accumulation window's gradients in its own buffers

    def __init__(self, accelerator: Any = None, config: Union[None, str, os.PathLike[str], dict[str, Any]] = None,
                 logging_level: int = logging.WARN, parallel_devices: Optional[list[Any]] = None,
                 cluster_environment: Any = None, process_group_backend: Optional[str] = None,
                 timeout: Optional[timedelta] = timedelta(minutes=30), **arguments: Any) -> None:
        for ignored in ("checkpoint_io", "precision_plugin", "precision", "load_full_weights",
                        "exclude_frozen_parameters"):
            arguments.pop(ignored, None)
        self.config = deepspeed_config(config, **arguments)
        try:
            import deepspeed  # noqa: F401
        except ImportError as err:
            raise ModuleNotFoundError("DeepSpeedStrategy needs the deepspeed package: pip install "
                                      "'fulmen[deepspeed]' --no-build-isolation") from err
        super().__init__(parallel_devices, cluster_environment, process_group_backend, timeout)
        self.logging_level = logging_level
        self.engine: Any = None
        self._runner: Any = None
        self.manual_optimizer_step = self._engine_optimizer_step

    @property
    @override
    def clips_gradients_itself(self) -> bool:  # type: ignore[override]
        """Once the engine runs, it holds the (partitioned) gradients and clips them in its step."""
        return self.engine is not None

    @property
    def zero_stage(self) -> int:
        """The ZeRO stage of the configuration (0: no partitioning)."""
        return int(self.config.get("zero_optimization", {}).get("stage", 0))

    @override
    def configure(self, accelerator: str, device_ids: list[int], num_nodes: int) -> None:
        if accelerator not in ("cuda", "cpu"):
            raise MisconfigurationException(f"DeepSpeedStrategy runs on CUDA GPUs or the CPU, and this run is on "
                                            f"{accelerator}; use accelerator='cuda' or 'cpu'")
        super().configure(accelerator, device_ids, num_nodes)

    @override
    def check_precision(self, precision: str) -> None:
        """DeepSpeed keeps fp32 master weights itself; fulmen's GradScaler and 16-bit weights do not apply."""
        if precision not in ("32-true", "bf16-mixed"):
            raise MisconfigurationException(
                f"DeepSpeedStrategy with precision={precision!r} is not supported by fulmen; use '32-true' or "
                "'bf16-mixed' (DeepSpeed then keeps bfloat16 weights and float32 master weights)")

    # ------------------------------------------------------------------------------------------ the engine
    @override
    def setup_module(self, module: nn.Module) -> nn.Module:
        return module.to(self.root_device)

    @override
    def wrap_training_step(self, trainer: "Trainer", module: nn.Module, step: Callable[..., Any]) -> Callable[..., Any]:
        """Start the engine on the module and its optimizer; the training step then runs through its forward."""
        import deepspeed

        from fulmen.core.hooks import overrides
        from fulmen.core.module import LightningModule
        from fulmen.core.optimizer import needs_closure

        if len(trainer.optimizers) != 1 or needs_closure(trainer.optimizers[0]) or overrides(
                module, LightningModule, "optimizer_step"):
            raise MisconfigurationException(
                "DeepSpeedStrategy steps one optimizer through its engine: configure_optimizers must return one "
                "optimizer that needs no closure (not LBFGS), and optimizer_step must not be overridden (under "
                "manual optimization too: a GAN's two optimizers need another strategy, such as 'ddp' or 'fsdp')")
        if any(hasattr(p, "ds_id") for p in module.parameters()):
            raise MisconfigurationException(
                "This module was partitioned by the DeepSpeed engine of an earlier fit (ZeRO stage 3), and a second "
                "engine cannot take it over; fit a new instance, loading the weights with load_from_checkpoint or "
                "resuming with fit(ckpt_path=...)")
        logging.getLogger("DeepSpeed").setLevel(self.logging_level)
        config = complete_config(self.config, trainer.precision, trainer.accumulate_grad_batches,
                                 trainer.gradient_clip_val, _batch_size(trainer))
        # DeepSpeed reads the ranks from the environment, which fulmen's launcher leaves unset in the first process.
        for name, value in (("LOCAL_RANK", self.local_rank), ("RANK", self.global_rank),
                            ("WORLD_SIZE", self.world_size)):
            os.environ.setdefault(name, str(value))
        self._runner = StepRunner(module, step)
        self.engine, _, _, _ = deepspeed.initialize(model=self._runner, optimizer=trainer.optimizers[0],
                                                    config=config, dist_init_required=False)
        self.model = self.engine
        return self._through_engine(step)

    # ------------------------------------------------------------------------------------------ manual optimization
    @override
    def manual_backward(self, trainer: "Trainer", loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        """``self.manual_backward(loss)``: the backward hooks around the engine's backward, which reduces (ZeRO-2, 3:
        partitions) the gradients."""
        hooks = trainer._hooks
        hooks.on_before_backward(loss)
        self.engine.backward(loss)
        hooks.on_after_backward()

    def _engine_optimizer_step(self, closure: Callable[[], Any]) -> Any:
        """``optimizer.step(closure)`` under manual optimization: the closure (with the pre-step hooks), then the
        engine's step, which updates the weights (and clips them by the configuration's ``gradient_clipping``) and
        clears the gradients."""
        result = closure()
        self.engine.step()
        return result

    @override
    def wrap_eval_step(self, module: nn.Module, step: Callable[..., Any]) -> Callable[..., Any]:
        # ZeRO-3 partitions the weights: the engine's forward gathers them around the step.
        return step if self.engine is None or self.zero_stage < 3 else self._through_engine(step)

    def _through_engine(self, step: Callable[..., Any]) -> Callable[..., Any]:
        engine, runner = self.engine, self._runner

        def through_engine(*args: Any) -> Any:
            object.__setattr__(runner, "step", step)
            return engine(*args)

        return through_engine

    @override
    def teardown(self) -> None:
        self.engine = self._runner = None
        super().teardown()

    # ------------------------------------------------------------------------------------------ checkpoints
    @override
    def module_state_dict(self, module: nn.Module) -> dict[str, Any]:
        """The whole weights (under ZeRO-3 gathered from every rank: all ranks take part)."""
        if self.engine is None or self.zero_stage < 3:
            return module.state_dict()
        whole = self.engine._zero3_consolidated_16bit_state_dict() or {}  # on rank 0; {} elsewhere
        return {k[len("module."):] if k.startswith("module.") else k: v for k, v in whole.items()}

    @override
    def optimizer_state(self, module: nn.Module, optimizer: Any) -> dict[str, Any]:
        """A note that the engine's files hold the optimizer state (each rank's partition); see save_checkpoint."""
        return {ENGINE_STATE: True} if self.engine is not None else optimizer.state_dict()

    @override
    def load_optimizer_state(self, module: nn.Module, optimizer: Any, state: dict[str, Any]) -> None:
        """Load the optimizer partitions (and the weights again) from the engine's files of a checkpoint folder."""
        folder = state.get(ENGINE_STATE)
        if self.engine is None or not isinstance(folder, str):
            raise MisconfigurationException(
                "This checkpoint was not written by DeepSpeedStrategy (or has no engine files); resume it with the "
                "strategy that wrote it, or load its weights with load_from_checkpoint")
        if not state.get("trusted"):
            raise pickle.UnpicklingError(
                f"Resuming from the DeepSpeed checkpoint {os.path.dirname(folder)!r} reads the engine's files, which "
                "hold pickled Python objects; if you trust them, pass weights_only=False to fit")
        loaded, _ = self.engine.load_checkpoint(folder, tag=_TAG, load_module_strict=True,
                                                load_optimizer_states=True, load_lr_scheduler_states=False)
        if loaded is None:
            raise FileNotFoundError(f"No DeepSpeed engine checkpoint in {folder!r}")

    @override
    def save_checkpoint(self, checkpoint: dict[str, Any], filepath: Union[str, os.PathLike[str]],
                        storage_options: Any = None) -> None:
        """During fit: every rank writes its engine files into a new folder, rank 0 adds ``meta.ckpt``, and the folder
        replaces ``filepath`` only when complete. Otherwise (no engine, or weights only): one file, as DDP."""
        if self.engine is None or ENGINE_STATE not in str(checkpoint.get("optimizer_states", "")):
            super().save_checkpoint(checkpoint, filepath)
            return
        engine = self.engine
        self.save_folder(filepath, checkpoint, lambda folder: engine.save_checkpoint(
            os.path.join(folder, ENGINE_FOLDER), tag=_TAG, save_latest=False))

    def __repr__(self) -> str:
        return f"DeepSpeedStrategy(stage={self.zero_stage}, devices={self.num_processes}, num_nodes={self.num_nodes})"


def _batch_size(trainer: "Trainer") -> Optional[int]:
    """The train loader's batch size, when it says (DeepSpeed's micro-batch size, for its throughput reports)."""
    loader = trainer.train_dataloader
    size = getattr(loader, "batch_size", None)
    return size if isinstance(size, int) else None

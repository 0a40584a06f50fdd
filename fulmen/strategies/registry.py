"""``StrategyRegistry``: the strategies by the names ``Trainer(strategy=...)`` takes, with Lightning's names and
arguments ("ddp_spawn", "fsdp_cpu_offload", "deepspeed_stage_2", ...), and those a user registers."""

from __future__ import annotations

from typing import Any

from fulmen.utilities.registry import _Registry


class _StrategyRegistry(_Registry):
    """Strategy classes by name: ``StrategyRegistry.register("ddp_static", DDPStrategy, static_graph=True)`` makes
    ``Trainer(strategy="ddp_static")`` build ``DDPStrategy(static_graph=True)``."""

    kind = "strategy"

    def available_strategies(self) -> list[str]:
        """The registered names."""
        return list(self.keys())


StrategyRegistry = _StrategyRegistry()

# Built by the Trainer on the device it picks.
StrategyRegistry.register("single_device", "fulmen.strategies.single_device:SingleDeviceStrategy",
                          description="one device")
StrategyRegistry.register("single_xla", "fulmen.strategies.single_xla:SingleDeviceXLAStrategy",
                          description="one XLA device")
StrategyRegistry.register("single_tpu", "fulmen.strategies.single_xla:SingleDeviceXLAStrategy",
                          description="one TPU")

_DDP_VARIANTS: dict[str, dict[str, Any]] = {
    f"ddp{suffix}{unused}": {**({"start_method": method} if method else {}), **args}
    for suffix, method in (("", None), ("_spawn", "spawn"), ("_fork", "fork"), ("_notebook", "fork"))
    for unused, args in (("", {}), ("_find_unused_parameters_false", {"find_unused_parameters": False}),
                         ("_find_unused_parameters_true", {"find_unused_parameters": True}))
}
for _name, _args in _DDP_VARIANTS.items():
    StrategyRegistry.register(_name, "fulmen.strategies.ddp:DDPStrategy", description=f"DDP ({_name})", **_args)
StrategyRegistry.register("fsdp", "fulmen.strategies.fsdp:FSDPStrategy", description="fully sharded data parallel")
StrategyRegistry.register("fsdp_cpu_offload", "fulmen.strategies.fsdp:FSDPStrategy",
                          description="fully sharded data parallel, parameters offloaded to the CPU",
                          cpu_offload=True)
_DEEPSPEED_VARIANTS: dict[str, dict[str, Any]] = {
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
for _name, _args in _DEEPSPEED_VARIANTS.items():
    StrategyRegistry.register(_name, "fulmen.strategies.deepspeed:DeepSpeedStrategy",
                              description=f"DeepSpeed ({_name})", **_args)

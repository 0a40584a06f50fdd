"""Trainer argument strings and numbers -> checked values and objects, once, in ``Trainer.__init__``.

Each function is pure and raises a ValueError or TypeError that names the argument, the value and what is accepted.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Optional, Union, overload

import torch

from fulmen.accelerators import devices as hardware
from fulmen.accelerators import registry
from fulmen.accelerators.accelerator import Accelerator
from fulmen.accelerators.cuda import CUDAAccelerator
from fulmen.accelerators.mps import MPSAccelerator
from fulmen.plugins.precision.modes import StrategyPrecision, for_mode
from fulmen.plugins.precision.precision import Precision
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from fulmen.strategies.strategy import Strategy

PRECISIONS = ("64-true", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true")
_LEGACY_PRECISION = {64: "64-true", "64": "64-true", 32: "32-true", "32": "32-true", 16: "16-mixed",
                     "16": "16-mixed", "bf16": "bf16-mixed"}
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")


@overload
def check_int(name: str, value: Any, minimum: int, allow_none: Literal[False] = False) -> int: ...
@overload
def check_int(name: str, value: Any, minimum: int, allow_none: bool) -> Optional[int]: ...
def check_int(name: str, value: Any, minimum: int, allow_none: bool = False) -> Optional[int]:
    """An int >= ``minimum`` (bools are refused: ``max_epochs=True`` is a mistake, not 1)."""
    if value is None and allow_none:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        extra = " or None" if allow_none else ""
        raise ValueError(f"Trainer({name}={value!r}) is not supported; pass an int >= {minimum}{extra}")
    return value


def check_bool(name: str, value: Any, allow_none: bool = True) -> Optional[bool]:
    if value is None and allow_none:
        return None
    if not isinstance(value, bool):
        raise TypeError(f"Trainer({name}={value!r}) must be True or False")
    return value


def precision(value: Any, accelerator: str, given: Optional[Precision] = None) -> Precision:
    """'32-true' (default) and friends, the legacy 64/32/16/'bf16', or the Precision plugin of
    ``Trainer(plugins=...)`` (``given``) -> a Precision object."""
    if given is not None:
        if value is not None:
            raise MisconfigurationException(
                f"Trainer(precision={value!r}) and a {type(given).__name__} in plugins= both set the precision; "
                "keep one")
        if isinstance(given, StrategyPrecision):
            given.bind(accelerator)
        return given
    if value is None:
        value = "32-true"
    if value in ("transformer-engine", "transformer-engine-float16"):
        if accelerator != "cuda":
            raise MisconfigurationException(f"Trainer(precision={value!r}) runs on CUDA GPUs only, and this run is "
                                            f"on {accelerator}")
        from fulmen.plugins.precision.transformer_engine import TransformerEnginePrecision

        return TransformerEnginePrecision(weights_dtype=torch.bfloat16 if value == "transformer-engine"
                                          else torch.float16)
    name = value if value in PRECISIONS else _LEGACY_PRECISION.get(value) if isinstance(value, (int, str)) else None
    if name is None:
        raise ValueError(
            f"Trainer(precision={value!r}) is not supported; choose one of "
            f"{', '.join(repr(p) for p in PRECISIONS)} (or 64, 32, 16, 'bf16'), 'transformer-engine' or "
            "'transformer-engine-float16'"
        )
    if value in (16, "16", "bf16"):
        rank_zero_warn(f"precision={value!r} is kept for compatibility; write precision={name!r} instead")
    if accelerator == "xla" and name in ("16-mixed", "64-true"):
        raise MisconfigurationException(
            f"Trainer(precision={value!r}) is not run on XLA devices (float16 autocast needs a GradScaler, which "
            "torch_xla lacks; TPUs have no fast float64); use 'bf16-mixed', 'bf16-true' or '32-true'")
    if name == "16-mixed" and accelerator == "cpu":
        rank_zero_warn("precision='16-mixed' is not supported on the CPU; using 'bf16-mixed' instead")
        name = "bf16-mixed"
    return for_mode(name, accelerator)


def accelerator(value: Any) -> Accelerator:
    """'auto' / 'cpu' / 'gpu' / 'cuda' / 'mps' / 'tpu', or an Accelerator object -> the accelerator to run on,
    checked to be present."""
    def present() -> str:  # only for the messages: counting XLA devices starts torch_xla's runtime
        return ", ".join(registry.available_names())

    if isinstance(value, str) and value.lower() not in ACCELERATORS and value in registry.AcceleratorRegistry:
        value = registry.AcceleratorRegistry.get(value)  # a name the user registered for their own class
    if isinstance(value, Accelerator):
        name = registry.name_of(value)
        if not value.is_available():
            raise MisconfigurationException(
                f"Trainer(accelerator={value!r}) but this machine has {registry.describe(name)}"
                f"{hardware.visible_devices_note()}; it has: {present()}")
        return value
    if not isinstance(value, str) or value.lower() not in ACCELERATORS:
        raise ValueError(
            f"Trainer(accelerator={value!r}) is not supported; choose one of {', '.join(map(repr, ACCELERATORS))}, "
            "or pass an Accelerator object"
        )
    value = value.lower()
    if value == "auto":
        return registry.by_name(registry.auto_accelerator())
    if value == "gpu":
        if hardware.cuda_count():
            return CUDAAccelerator()
        if hardware.mps_available():
            return MPSAccelerator()
        raise MisconfigurationException(
            f"Trainer(accelerator='gpu') but this machine has no CUDA or MPS device"
            f"{hardware.visible_devices_note()}; it has: {present()}. Use accelerator='cpu' or 'auto'")
    if value == "tpu":
        if not hardware.xla_available():
            raise MisconfigurationException(
                f"Trainer(accelerator='tpu') runs through the torch_xla package, which is not installed; this "
                f"machine has: {present()}. Install torch_xla (the release that matches torch {torch.__version__}), "
                "or use accelerator='auto' to take the best device present")
        value = "xla"
    if not registry.available(value):
        asked = "tpu" if value == "xla" else value
        raise MisconfigurationException(
            f"Trainer(accelerator={asked!r}) but this machine has {registry.describe(value)}"
            f"{hardware.visible_devices_note()}; it has: {present()}. Use accelerator='auto' to take the best "
            "device present")
    return registry.by_name(value)


def devices(value: Any, accel: str) -> list[int]:
    """'auto' / int / '2' / '0,1' / '-1' / [0, 1] -> the device indices to use (CPU: a number of processes)."""
    count = registry.device_count(accel)
    if value == "auto":  # fulmen runs on one XLA device (see strategy())
        return [0] if accel in ("cpu", "xla") else list(range(count))
    parsed: Any = value
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"-?\d+", text):
            parsed = int(text)
        elif re.fullmatch(r"\d+(\s*,\s*\d+)*,?", text):
            parsed = [int(x) for x in text.split(",") if x.strip()]
        else:
            parsed = None
    if isinstance(parsed, bool) or parsed is None or not isinstance(parsed, (int, list, tuple)):
        raise ValueError(
            f"Trainer(devices={value!r}) is not supported; pass 'auto', a number of devices (1, '2', -1 for all), "
            "or a list of indices ([0, 1] or '0,1')"
        )
    if isinstance(parsed, int):
        if parsed == -1:
            return list(range(count))
        if parsed < 1:
            raise ValueError(f"Trainer(devices={value!r}) must be >= 1, or -1 for all devices")
        if accel == "cpu":
            return list(range(parsed))
        if parsed > count:
            raise MisconfigurationException(
                f"Trainer(devices={value!r}) asks for {parsed} {accel} devices but this machine has "
                f"{registry.describe(accel, count)}{hardware.visible_devices_note()}; pass devices={count} "
                "or fewer (or -1 for all)"
            )
        return list(range(parsed))
    ids = list(parsed)
    if accel == "cpu":
        raise ValueError(f"Trainer(devices={value!r}): on the CPU, devices is a number of processes (such as 2), not "
                         "a list of indices")
    if not ids or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
        raise ValueError(f"Trainer(devices={value!r}): a device list must hold indices >= 0")
    if len(set(ids)) != len(ids):
        raise ValueError(f"Trainer(devices={value!r}) names a device twice; list each index once")
    missing = [i for i in ids if i >= count]
    if missing:
        raise MisconfigurationException(
            f"Trainer(devices={value!r}) names {accel} device {missing[0]}, but this machine has "
            f"{registry.describe(accel, count)}{hardware.visible_devices_note()}"
        )
    return ids


def strategy(value: Any, device_ids: list[int], num_nodes: int, accel: str, environment: Any = None) -> "Strategy":
    """'auto' / a name in ``StrategyRegistry`` / a strategy object -> the strategy object of the run, configured for
    the devices. ``environment``: a ClusterEnvironment from ``Trainer(plugins=...)`` for a multi-process strategy."""
    from fulmen.strategies.parallel import ParallelStrategy
    from fulmen.strategies.registry import StrategyRegistry
    from fulmen.strategies.single_device import SingleDeviceStrategy

    processes = len(device_ids) * num_nodes
    if accel == "xla":
        return _xla_strategy(value, device_ids, num_nodes)
    if isinstance(value, str) and value.lower() in _XLA_NAMES:
        raise MisconfigurationException(
            f"Trainer(strategy={value!r}) runs on an XLA device, and this run is on {accel}; pass "
            "accelerator='tpu' (torch_xla), or another strategy")
    if isinstance(value, str):
        name = value.lower()
        if name == "auto":
            name = "single_device" if processes == 1 else "ddp"
        if name not in StrategyRegistry:
            raise ValueError(
                f"Trainer(strategy={value!r}) is not supported; choose 'auto', 'single_device', 'ddp', "
                "'ddp_find_unused_parameters_true', 'ddp_spawn', 'fsdp' or 'deepspeed' (and their variants), or a "
                "name registered in StrategyRegistry")
        if name == "single_device":
            if processes != 1:
                raise MisconfigurationException(
                    f"Trainer(strategy='single_device', devices={len(device_ids)}, num_nodes={num_nodes}) runs one "
                    "process on one device; pass devices=1, or strategy='ddp' for several")
            return SingleDeviceStrategy(torch.device(accel, device_ids[0]) if accel != "cpu" else torch.device("cpu"))
        value = StrategyRegistry.get(name)
    if isinstance(value, ParallelStrategy):
        if environment is not None:
            if value.cluster_environment is not None and value.cluster_environment is not environment:
                raise MisconfigurationException(
                    f"Trainer(plugins=[{type(environment).__name__}(...)]) and the strategy's cluster_environment="
                    f"{type(value.cluster_environment).__name__}(...) both say where the processes come from; keep "
                    "one")
            value.cluster_environment = environment
        value.configure(accel, device_ids, num_nodes)
        return value
    if isinstance(value, SingleDeviceStrategy):
        if processes != 1:
            raise MisconfigurationException(
                f"Trainer(strategy=SingleDeviceStrategy(...), devices={len(device_ids)}, num_nodes={num_nodes}): a "
                "single-device strategy runs one process; pass devices=1, or strategy='ddp'")
        return value
    raise TypeError(f"Trainer(strategy={value!r}) must be a strategy name such as 'auto' or 'ddp', or a "
                    "fulmen strategy object (SingleDeviceStrategy, DDPStrategy)")


_XLA_NAMES = ("xla", "xla_debug", "single_xla", "single_tpu")


def _xla_strategy(value: Any, device_ids: list[int], num_nodes: int) -> Any:
    """The strategy on an XLA device: fulmen runs on one (Lightning's 'xla' strategy, over several, is not here)."""
    from fulmen.strategies.single_device import SingleDeviceStrategy
    from fulmen.strategies.single_xla import SingleDeviceXLAStrategy

    name = value.lower() if isinstance(value, str) else None
    one = len(device_ids) == 1 and num_nodes == 1
    if isinstance(value, SingleDeviceXLAStrategy) and one:
        return value
    if name in ("auto", "single_device", "single_xla", "single_tpu") and one:
        return SingleDeviceXLAStrategy(torch.device("xla", device_ids[0]))
    shown = name if name is not None else f"{type(value).__name__}(...)"
    if not one:
        raise MisconfigurationException(
            f"Trainer(accelerator='tpu', devices={device_ids if len(device_ids) > 1 else len(device_ids)}, "
            f"num_nodes={num_nodes}, strategy={shown!r}): fulmen runs on one XLA device; training over several "
            "(Lightning's strategy='xla') is not supported. Pass devices=1 (or devices=[i] for device i)")
    if isinstance(value, SingleDeviceStrategy):
        raise MisconfigurationException(
            f"Trainer(accelerator='tpu', strategy={value!r}): on an XLA device pass "
            "fulmen.strategies.SingleDeviceXLAStrategy(), which cuts the lazy graph at every step, or "
            "strategy='auto'")
    raise MisconfigurationException(
        f"Trainer(accelerator='tpu', strategy={shown!r}): fulmen runs on one XLA device, with strategy='auto' or "
        "'single_xla'; DDP, FSDP, DeepSpeed and Lightning's 'xla' strategy are not run on XLA devices")


def limit_batches(name: str, value: Any) -> Union[int, float]:
    """limit_*_batches / overfit_batches: None -> 1.0; an int >= 0 (batches) or a float in [0, 1] (fraction)."""
    if value is None:
        return 1.0
    if isinstance(value, bool):
        raise TypeError(f"Trainer({name}={value!r}) must be an int (batches) or a float in [0.0, 1.0] (fraction)")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"Trainer({name}={value!r}) must be >= 0")
        return value
    if isinstance(value, float):
        if not 0.0 <= value <= 1.0:
            raise ValueError(
                f"Trainer({name}={value!r}): a float is a fraction and must be in [0.0, 1.0]; pass an int for a "
                "number of batches"
            )
        return value
    raise TypeError(f"Trainer({name}={value!r}) must be an int (batches) or a float in [0.0, 1.0] (fraction)")


def val_check_interval(value: Any) -> Union[int, float, timedelta]:
    """None -> 1.0; a float in (0, 1] (fraction of an epoch), an int > 0 (batches), or a time interval."""
    if value is None:
        return 1.0
    if isinstance(value, (str, timedelta, dict)):
        return max_time("val_check_interval", value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"Trainer(val_check_interval={value!r}) must be a float in (0.0, 1.0], an int number of batches, or a "
            "time ('00:00:10:00', a timedelta or a dict of timedelta arguments)"
        )
    if isinstance(value, float) and not 0.0 < value <= 1.0:
        raise ValueError(
            f"Trainer(val_check_interval={value!r}): a float is a fraction of the epoch and must be in (0.0, 1.0]; "
            "pass an int for a number of batches"
        )
    if isinstance(value, int) and value < 1:
        raise ValueError(f"Trainer(val_check_interval={value!r}) must be >= 1 when an int")
    return value


def max_time(name: str, value: Any) -> Optional[timedelta]:
    """'DD:HH:MM:SS', a timedelta, or a dict of timedelta arguments -> a timedelta."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value
    if isinstance(value, dict):
        try:
            return timedelta(**value)
        except TypeError as err:
            raise ValueError(f"Trainer({name}={value!r}): {err}; use timedelta keywords such as hours=1") from None
    if isinstance(value, str):
        match = re.fullmatch(r"(\d+):(\d+):(\d+):(\d+)", value.strip())
        if match:
            days, hours, minutes, seconds = map(int, match.groups())
            return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    raise ValueError(
        f"Trainer({name}={value!r}) is not supported; pass 'DD:HH:MM:SS', a datetime.timedelta or a dict such as "
        "{'hours': 1}"
    )


def gradient_clip(value: Any, algorithm: Any) -> tuple[Optional[Union[int, float]], Optional[str]]:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise TypeError(f"Trainer(gradient_clip_val={value!r}) must be an int or a float")
    if value is not None and not value >= 0:  # also NaN, which would turn every clipped gradient into NaN
        raise ValueError(f"Trainer(gradient_clip_val={value!r}) must be >= 0 (inf computes the norm and clips "
                         "nothing)")
    if algorithm is not None:
        if not isinstance(algorithm, str) or algorithm.lower() not in ("norm", "value"):
            raise ValueError(
                f"Trainer(gradient_clip_algorithm={algorithm!r}) is not supported; choose 'norm' or 'value'"
            )
        algorithm = algorithm.lower()
    return value, algorithm


def fast_dev_run(value: Any) -> int:
    """fast_dev_run: a bool (True = 1 batch) or an int >= 0 -> the number of batches."""
    if isinstance(value, bool):
        return int(value)
    if not isinstance(value, int) or value < 0:
        raise ValueError(f"Trainer(fast_dev_run={value!r}) is not supported; pass a bool or an int >= 0")
    return value

def _as_list(plugins: Any) -> list[Any]:
    if plugins is None:
        return []
    return list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]


class Plugins(NamedTuple):
    """``Trainer(plugins=...)`` sorted by kind (None where none of that kind was given)."""

    precision: Optional[Precision]
    environment: Any
    checkpoint_io: Any
    layer_sync: Any


def plugins(value: Any) -> Plugins:
    """The plugin instances of ``Trainer(plugins=...)``, at most one of each kind: a precision plugin, a cluster
    environment, a checkpoint IO and a layer sync."""
    from fulmen.plugins.environments import ClusterEnvironment
    from fulmen.plugins.io.checkpoint_plugin import CheckpointIO
    from fulmen.plugins.layer_sync import LayerSync

    kinds = {"precision": Precision, "environment": ClusterEnvironment, "checkpoint_io": CheckpointIO,
             "layer_sync": LayerSync}
    found: dict[str, Any] = dict.fromkeys(kinds)
    for plugin in _as_list(value):
        if isinstance(plugin, str):
            raise TypeError(f"Trainer(plugins={plugin!r}): pass plugin instances, not strings")
        kind = next((k for k, cls in kinds.items() if isinstance(plugin, cls)), None)
        if kind is None:
            raise TypeError(f"Trainer(plugins=[{type(plugin).__name__}(...)]) is not a plugin fulmen runs; pass "
                            "precision plugins (fulmen.plugins.MixedPrecision, ...), cluster environments "
                            "(fulmen.plugins.environments.SLURMEnvironment, ...), a CheckpointIO or a LayerSync")
        if found[kind] is not None:
            raise MisconfigurationException(
                f"Trainer(plugins=[...]) holds two {kinds[kind].__name__} plugins ({type(found[kind]).__name__} and "
                f"{type(plugin).__name__}); keep one")
        found[kind] = plugin
    return Plugins(**found)


def check_barebones(logger: Any, checkpointing: Any, progress: Any, summary: Any, sanity: Any, log_every: Any,
                     anomaly: bool, profiler: Any) -> None:
    for name, value, off in (("logger", logger, (None, False)), ("enable_checkpointing", checkpointing,
                             (None, False)), ("enable_progress_bar", progress, (None, False)),
                             ("enable_model_summary", summary, (None, False)),
                             ("num_sanity_val_steps", sanity, (None, 0)), ("log_every_n_steps", log_every,
                             (None, 0)), ("detect_anomaly", anomaly, (False,)), ("profiler", profiler, (None,))):
        if value not in off:
            raise ValueError(f"Trainer(barebones=True) turns {name} off, but {name}={value!r} was passed; "
                             f"drop {name} or barebones")

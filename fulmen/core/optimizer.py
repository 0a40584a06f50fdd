"""``configure_optimizers`` output -> optimizers and scheduler configs; the LightningOptimizer wrapper."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, Optional

import torch
from torch.optim import Optimizer
from typing_extensions import override

from fulmen.core.step import HookedClosure, before_optimizer_step
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_warn
from fulmen.utilities.types import LRSchedulerConfig

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer

_FORMATS = (
    "an Optimizer; a list of Optimizers; ([optimizers], [schedulers or scheduler dicts]); "
    '{"optimizer": opt, "lr_scheduler": scheduler or dict, "monitor": name}; a list of such dicts; or None'
)


class _NoOptimizer(Optimizer):
    """Stands in when ``configure_optimizers`` returns None: the step runs, nothing is updated."""

    def __init__(self) -> None:
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[Any, Any] = {}
        self.defaults: dict[str, Any] = {}

    @override
    def step(self, closure: Optional[Callable[[], Any]] = None) -> Any:  # type: ignore[override]
        return closure() if closure is not None else None

    @override
    def zero_grad(self, set_to_none: bool = True) -> None:
        return None

    @override
    def state_dict(self) -> dict[str, Any]:
        return {}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        return None

    def __repr__(self) -> str:
        return "No Optimizer"


def _is_optimizer(obj: Any) -> bool:
    return isinstance(obj, Optimizer) or (callable(getattr(obj, "step", None)) and hasattr(obj, "param_groups"))


def parse_optimizers(conf: Any, automatic: bool) -> tuple[list[Any], list[LRSchedulerConfig]]:
    """Turn any supported ``configure_optimizers`` return value into (optimizers, scheduler configs)."""
    monitor = None
    schedulers: list[Any] = []
    if conf is None:
        rank_zero_warn("`configure_optimizers` returned None: this fit will run without an optimizer")
        return [_NoOptimizer()], []
    if _is_optimizer(conf):
        optimizers = [conf]
    elif (isinstance(conf, (list, tuple)) and len(conf) == 2 and isinstance(conf[0], list)
          and all(_is_optimizer(o) for o in conf[0])):
        optimizers = list(conf[0])
        schedulers = list(conf[1]) if isinstance(conf[1], (list, tuple)) else [conf[1]]
    elif isinstance(conf, dict):
        _check_dict(conf)
        optimizers = [conf["optimizer"]]
        monitor = conf.get("monitor")
        schedulers = [conf["lr_scheduler"]] if "lr_scheduler" in conf else []
    elif isinstance(conf, (list, tuple)) and conf and all(isinstance(d, dict) for d in conf):
        for d in conf:
            _check_dict(d)
        optimizers = [d["optimizer"] for d in conf]
        schedulers = [
            {**d["lr_scheduler"]} if isinstance(d["lr_scheduler"], dict)
            else {"scheduler": d["lr_scheduler"], **({"monitor": d["monitor"]} if "monitor" in d else {})}
            for d in conf if "lr_scheduler" in d
        ]
    elif isinstance(conf, (list, tuple)) and conf and all(_is_optimizer(o) for o in conf):
        optimizers = list(conf)
    else:
        raise MisconfigurationException(
            f"`configure_optimizers` returned {type(conf).__name__} {conf!r:.200}; return one of: {_FORMATS}"
        )
    configs = [_scheduler_config(s, monitor, automatic) for s in schedulers]
    for config in configs:
        opt = getattr(config.scheduler, "optimizer", None)
        if opt is not None and not any(opt is o for o in optimizers):
            raise MisconfigurationException(
                f"The scheduler {type(config.scheduler).__name__} returned by `configure_optimizers` wraps an "
                "optimizer that `configure_optimizers` does not return; return that optimizer too"
            )
    return optimizers, configs


def warn_foreign_parameters(module: Any, optimizers: list[Any]) -> None:
    """Warn, naming the optimizer, when one holds parameters that are not the module's: built over a copy of the
    model or over a layer the module does not keep, it steps tensors the module's forward never uses."""
    own = {id(p) for p in module.parameters()}
    for index, opt in enumerate(optimizers):
        params = [p for group in getattr(opt, "param_groups", []) for p in group.get("params", [])]
        foreign = sum(id(p) not in own for p in params)
        if foreign:
            rank_zero_warn(
                f"Optimizer {index} ({type(opt).__name__}) returned by configure_optimizers holds {foreign} of its "
                f"{len(params)} parameters that are not parameters of {type(module).__name__}: stepping them does not "
                f"train the model{' (it trains nothing)' if foreign == len(params) else ''}. Build it over "
                "self.parameters() (or the module's own submodules), and keep any other trained tensor as an "
                "nn.Parameter attribute of the module"
            )


def _check_dict(conf: dict[str, Any]) -> None:
    if "optimizer" not in conf:
        raise MisconfigurationException(
            f"`configure_optimizers` returned a dict without an 'optimizer' key (keys: {sorted(conf)}); "
            f"return one of: {_FORMATS}"
        )
    extra = set(conf) - {"optimizer", "lr_scheduler", "monitor"}
    if extra:
        rank_zero_warn(f"`configure_optimizers` returned a dict with unknown keys {sorted(extra)}; they are ignored")


def _scheduler_config(scheduler: Any, monitor: Optional[str], automatic: bool) -> LRSchedulerConfig:
    plateau_cls = torch.optim.lr_scheduler.ReduceLROnPlateau
    if isinstance(scheduler, dict):
        keys = {f.name for f in dataclasses.fields(LRSchedulerConfig)}
        extra = set(scheduler) - keys
        if extra:
            rank_zero_warn(f"the lr_scheduler dict has unknown keys {sorted(extra)}; they are ignored",
                           RuntimeWarning)
            scheduler = {k: v for k, v in scheduler.items() if k in keys}
        if "scheduler" not in scheduler:
            raise MisconfigurationException(
                'the lr_scheduler dict must have the key "scheduler", holding the scheduler: '
                '{"scheduler": StepLR(opt, 1), "interval": "epoch"}'
            )
        interval = scheduler.get("interval", "epoch")
        if interval not in ("step", "epoch"):
            raise MisconfigurationException(
                f'the lr_scheduler dict has "interval": {interval!r}; it must be "step" or "epoch"'
            )
        frequency = scheduler.get("frequency", 1)
        if not isinstance(frequency, int) or isinstance(frequency, bool) or frequency < 1:
            raise MisconfigurationException(
                f'the lr_scheduler dict has "frequency": {frequency!r}; it must be an int >= 1'
            )
        scheduler = dict(scheduler)
        scheduler.setdefault("reduce_on_plateau", isinstance(scheduler["scheduler"], plateau_cls))
        if scheduler["reduce_on_plateau"] and scheduler.get("monitor") is None:
            scheduler["monitor"] = monitor
            if monitor is None:
                raise MisconfigurationException(
                    'a ReduceLROnPlateau scheduler needs a metric to monitor: add "monitor": "val_loss" (a name you '
                    "self.log) to the lr_scheduler dict"
                )
        if isinstance(scheduler["scheduler"], torch.optim.lr_scheduler.OneCycleLR) and interval == "epoch":
            rank_zero_warn("A OneCycleLR scheduler is using 'interval': 'epoch'. Did you mean 'interval': 'step'?",
                           RuntimeWarning)
        config = LRSchedulerConfig(**scheduler)
    elif isinstance(scheduler, plateau_cls):
        if monitor is None:
            raise MisconfigurationException(
                "a ReduceLROnPlateau scheduler needs a metric to monitor: return "
                '{"optimizer": opt, "lr_scheduler": scheduler, "monitor": "val_loss"} from configure_optimizers'
            )
        config = LRSchedulerConfig(scheduler, reduce_on_plateau=True, monitor=monitor)
    else:
        config = LRSchedulerConfig(scheduler)
    if not callable(getattr(config.scheduler, "step", None)):
        raise MisconfigurationException(
            f"the lr scheduler {config.scheduler!r:.100} has no step() method; return a torch.optim.lr_scheduler "
            "scheduler or override LightningModule.lr_scheduler_step"
        )
    return config


def do_nothing_closure() -> None:
    """A closure that does nothing: what ``optimizer.step()`` runs when it is given none."""
    return None


_WRAPPER_CLASSES: dict[type, type] = {}


def _wrapper_class(optimizer_cls: type) -> type:
    """``Lightning<Optimizer>``: a subclass of both LightningOptimizer and the optimizer's class, made once per class
    (so that isinstance(wrapped, torch.optim.SGD) holds)."""
    cls = _WRAPPER_CLASSES.get(optimizer_cls)
    if cls is None:
        cls = _WRAPPER_CLASSES[optimizer_cls] = type("Lightning" + optimizer_cls.__name__,
                                                     (LightningOptimizer, optimizer_cls), {})
    return cls


class LightningOptimizer:
    """Wraps a torch optimizer so that ``step`` runs through the Trainer (hooks, precision, step counting).

    An instance is also an instance of the wrapped optimizer's class, and shares its ``param_groups`` and ``state``.
    """

    def __init__(self, optimizer: Any) -> None:
        # Share the optimizer's attributes (param_groups, state, defaults) rather than copying them.
        self.__dict__ = {k: v for k, v in optimizer.__dict__.items() if k not in ("step", "__del__")}
        self._optimizer = optimizer
        self._trainer: Optional["Trainer"] = None  # set by the Trainer; without one, step() is the plain optimizer step
        self.__class__ = _wrapper_class(type(optimizer))

    @property
    def optimizer(self) -> Any:
        """The wrapped torch optimizer."""
        return self._optimizer

    @classmethod
    def _to_lightning_optimizer(cls, optimizer: Any) -> "LightningOptimizer":
        return optimizer if isinstance(optimizer, LightningOptimizer) else cls(optimizer)

    def step(self, closure: Optional[Callable[[], Any]] = None, **kwargs: Any) -> Any:
        """Run ``closure`` (if given), the ``on_before_optimizer_step`` hooks, then the optimizer's step.

        Under manual optimization each call counts as one ``global_step``.
        """
        optimizer = self._optimizer
        trainer = self._trainer
        if trainer is None:
            return optimizer.step(closure=closure, **kwargs) if closure else optimizer.step(**kwargs)
        full: Callable[[], Any]
        if isinstance(closure, HookedClosure):
            full = closure
        else:
            def with_pre_step_hooks() -> Any:
                result = closure() if closure is not None else None
                before_optimizer_step(trainer, optimizer)
                return result

            full = with_pre_step_hooks

        precision = trainer.precision_plugin
        engine_step = trainer.strategy.manual_optimizer_step
        if engine_step is not None:  # DeepSpeed: its engine steps the optimizer it wraps
            out = engine_step(full)
        # Without a grad scaler, step directly: one frame less between the user's step and the closure.
        elif precision.scaler is None:
            out = optimizer.step(closure=full, **kwargs)
        else:
            out = precision.optimizer_step(optimizer, full, **kwargs)
        if not trainer.lightning_module.automatic_optimization:
            trainer.state.global_step += 1
        return out

    def zero_grad(self, set_to_none: bool = True) -> None:
        self._optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return self._optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._optimizer.load_state_dict(state_dict)

    def __repr__(self) -> str:
        return f"Lightning{self._optimizer!r}"


def needs_closure(optimizer: Any) -> bool:
    """Whether ``optimizer.step`` requires a closure (LBFGS): its ``closure`` parameter has no default."""
    import inspect

    try:
        params = inspect.signature(type(optimizer).step).parameters
    except (TypeError, ValueError):
        return False
    closure = params.get("closure")
    return closure is not None and closure.default is inspect.Parameter.empty

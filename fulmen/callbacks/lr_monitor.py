"""LearningRateMonitor: log each optimizer's learning rate (and momentum, weight decay) to the loggers."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any, Optional

import torch
from typing_extensions import override

from fulmen.callbacks.callback import Callback
from fulmen.loops.rules import should_log_step
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer


class LearningRateMonitor(Callback):
    """Log learning rates as Lightning's LearningRateMonitor does.

    Names: ``lr-<OptimizerClass>`` (or the scheduler config's ``name``), ``-1``, ``-2`` for further optimizers of the
    same class, and ``/pg1``, ``/pg2`` (or ``/<group name>``) when an optimizer has several parameter groups;
    ``-momentum`` and ``-weight_decay`` variants when asked for. The values go to every logger at the step axis of
    the training metrics, and into ``trainer.callback_metrics``; ``lrs`` keeps their history.

    Args:
        logging_interval: "step" (at logged training steps), "epoch" (at each train epoch start), or None: each
            scheduler at its own interval, optimizers without a scheduler at logged steps.
        log_momentum: also log the momentum (``betas[0]`` for Adam-like optimizers; 0 without momentum).
        log_weight_decay: also log the weight decay.
    """

    def __init__(self, logging_interval: Optional[str] = None, log_momentum: bool = False,
                 log_weight_decay: bool = False) -> None:
        if logging_interval not in (None, "step", "epoch"):
            raise MisconfigurationException(
                f"LearningRateMonitor(logging_interval={logging_interval!r}) is not supported; pass 'step', "
                "'epoch' or None")
        self.logging_interval = logging_interval
        self.log_momentum = log_momentum
        self.log_weight_decay = log_weight_decay
        self.lrs: dict[str, list[float]] = {}
        # The momentum and weight decay last logged, by ``<name>-momentum`` and ``<name>-weight_decay`` (None until
        # logged: they are logged with log_momentum and log_weight_decay only).
        self.last_momentum_values: dict[str, Optional[float]] = {}
        self.last_weight_decay_values: dict[str, Optional[float]] = {}

    @override
    def on_train_start(self, trainer: "Trainer", pl_module: Any) -> None:
        if not trainer.loggers:
            raise MisconfigurationException(
                "LearningRateMonitor needs a logger to write to, and this Trainer has logger=False; pass a logger or "
                "remove the callback")
        if self.log_momentum:
            optimizers = [c.scheduler.optimizer for c in trainer.lr_scheduler_configs] or trainer.optimizers
            if any("momentum" not in opt.defaults and "betas" not in opt.defaults for opt in optimizers):
                rank_zero_warn("LearningRateMonitor(log_momentum=True): an optimizer has no momentum; 0 is logged "
                               "for it", RuntimeWarning)
        names = [name for _, group_names, _ in self._sources(trainer) for name in group_names]
        self.lrs = {name: [] for name in names}
        self.last_momentum_values = {f"{name}-momentum": None for name in names}
        self.last_weight_decay_values = {f"{name}-weight_decay": None for name in names}

    @override
    def on_train_batch_start(self, trainer: "Trainer", pl_module: Any, batch: Any, batch_idx: int) -> None:
        if self.logging_interval != "epoch" and should_log_step(trainer):
            self._log(trainer, "step" if self.logging_interval is None else "any")

    @override
    def on_train_epoch_start(self, trainer: "Trainer", pl_module: Any) -> None:
        if self.logging_interval != "step":
            self._log(trainer, "epoch" if self.logging_interval is None else "any")

    # ------------------------------------------------------------------------------------------ internals
    def _sources(self, trainer: "Trainer") -> list[tuple[Any, list[str], Optional[str]]]:
        """(optimizer, a name per parameter group, the scheduler's interval or None) for the schedulers' optimizers
        first, then the optimizers without a scheduler."""
        out: list[tuple[Any, list[str], Optional[str]]] = []
        seen: list[Any] = []
        per_class: defaultdict[type, int] = defaultdict(int)

        def named(optimizer: Any, name: str, count_class: bool) -> list[str]:
            seen.append(optimizer)
            cls = type(optimizer)
            if count_class:
                per_class[cls] += 1
            if per_class.get(cls, 0) > 1:
                name = f"{name}-{per_class[cls] - 1}"
            groups = optimizer.param_groups
            group_names = [g.get("name", f"pg{i}") for i, g in enumerate(groups, start=1)]
            if len(set(group_names)) != len(group_names):
                raise MisconfigurationException(
                    f"{name}: an optimizer's parameter groups must have different 'name' values, got {group_names}")
            if len(groups) > 1:
                return [f"{name}/{g}" for g in group_names]
            return [f"{name}/{groups[0]['name']}" if groups[0].get("name") else name]

        for config in trainer.lr_scheduler_configs:
            optimizer = config.scheduler.optimizer
            base = config.name if config.name is not None else f"lr-{type(optimizer).__name__}"
            out.append((optimizer, named(optimizer, base, config.name is None), config.interval))
        for optimizer in trainer.optimizers:
            optimizer = getattr(optimizer, "optimizer", optimizer)  # a LightningOptimizer wraps the real one
            if all(optimizer is not s for s in seen):
                out.append((optimizer, named(optimizer, f"lr-{type(optimizer).__name__}", True), None))
        return out

    def _log(self, trainer: "Trainer", interval: str) -> None:
        stats: dict[str, float] = {}
        for optimizer, names, scheduler_interval in self._sources(trainer):
            if scheduler_interval is not None and interval not in (scheduler_interval, "any"):
                continue
            betas = "betas" in optimizer.defaults
            for group, name in zip(optimizer.param_groups, names):
                stats[name] = group["lr"]
                self.lrs.setdefault(name, []).append(group["lr"])
                if self.log_momentum:
                    momentum = group["betas"][0] if betas else group.get("momentum", 0)
                    stats[f"{name}-momentum"] = self.last_momentum_values[f"{name}-momentum"] = momentum
                if self.log_weight_decay:
                    decay = group["weight_decay"]
                    stats[f"{name}-weight_decay"] = self.last_weight_decay_values[f"{name}-weight_decay"] = decay
        if not stats:
            return
        device = trainer.strategy.root_device
        trainer._metrics.callback.update({k: torch.tensor(v, device=device) for k, v in stats.items()})
        for logger in trainer.loggers:
            logger.log_metrics(stats, step=trainer.state.batches_that_stepped)

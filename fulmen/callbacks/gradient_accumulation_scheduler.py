"""GradientAccumulationScheduler: change ``accumulate_grad_batches`` by epoch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from typing_extensions import override

from fulmen.callbacks.callback import Callback
from fulmen.core.hooks import overrides
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer


class GradientAccumulationScheduler(Callback):
    """Accumulate ``scheduling[e]`` batches per optimizer step from epoch ``e`` on (1 before the first key).

    Example: ``GradientAccumulationScheduler({0: 4, 5: 2, 10: 1})``. Use it with ``Trainer(accumulate_grad_batches=1)``
    (the default), and automatic optimization.
    """

    def __init__(self, scheduling: dict[int, int]) -> None:
        if not scheduling:
            raise TypeError("GradientAccumulationScheduler(scheduling={}) is empty; pass {epoch: factor}, e.g. {0: 4}")
        if any(isinstance(k, bool) or not isinstance(k, int) or k < 0 for k in scheduling):
            raise MisconfigurationException(
                f"GradientAccumulationScheduler: epochs must be ints >= 0, got {list(scheduling)}")
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in scheduling.values()):
            raise MisconfigurationException(
                f"GradientAccumulationScheduler: factors must be ints >= 1, got {list(scheduling.values())}")
        self.scheduling = dict(scheduling)
        self.scheduling.setdefault(0, 1)
        self.epochs = sorted(self.scheduling)

    def going_to_accumulate_grad_batches(self) -> bool:
        return any(v > 1 for v in self.scheduling.values())

    def get_accumulate_grad_batches(self, epoch: int) -> int:
        """The factor for ``epoch``: that of the last scheduled epoch at or before it."""
        return self.scheduling[max(e for e in self.epochs if e <= epoch)]

    @override
    def on_train_start(self, trainer: "Trainer", pl_module: Any) -> None:
        from fulmen.core.module import LightningModule

        if not pl_module.automatic_optimization:
            raise RuntimeError("GradientAccumulationScheduler works with automatic optimization only; under manual "
                               "optimization accumulate in training_step, or remove the callback")
        if self.going_to_accumulate_grad_batches() and (
                overrides(pl_module, LightningModule, "optimizer_step")
                or overrides(pl_module, LightningModule, "optimizer_zero_grad")):
            rank_zero_warn("GradientAccumulationScheduler with an overridden optimizer_step or optimizer_zero_grad: "
                           "those hooks run once per optimizer step, not on every batch")
        if trainer.accumulate_grad_batches != 1:
            raise ValueError(
                f"Trainer(accumulate_grad_batches={trainer.accumulate_grad_batches}) and a "
                "GradientAccumulationScheduler both set the accumulation; remove one of them")

    @override
    def on_train_epoch_start(self, trainer: "Trainer", pl_module: Any) -> None:
        trainer.accumulate_grad_batches = self.get_accumulate_grad_batches(trainer.current_epoch)

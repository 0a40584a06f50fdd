"""The automatic step run as Lightning runs it, inside ``optimizer.step(closure)``: the Trainer picks it once per fit,
only when the module overrides ``optimizer_step`` or the optimizer needs a closure (LBFGS)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from torch import Tensor

from fulmen.core.hooks import set_hook_name
from fulmen.core.step import (NO_CONTEXT, HookedClosure, before_optimizer_step, begin_training_step, finite_or_none,
                              run_backward, training_step_loss, zero_gradients)

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer


class _StepClosure(HookedClosure):
    """The closure ``closure_step`` hands to ``optimizer_step``: training_step, zero_grad at the start of an
    accumulation window, backward, and (when the window ends) the pre-step hooks and clipping; it keeps the batch-end
    outputs. The body sits in ``__call__`` itself, so the closure path has no more frames than a nested function."""

    __slots__ = ("trainer", "batch", "batch_idx", "zero_grad", "step", "outputs")

    def __init__(self, trainer: "Trainer", batch: Any, batch_idx: int, zero_grad: bool, step: bool) -> None:
        self.trainer, self.batch, self.batch_idx = trainer, batch, batch_idx
        self.zero_grad, self.step = zero_grad, step
        self.outputs: Any = {}

    # It repeats the first half of automatic_step on purpose: a helper shared by both would put one more frame
    # between Trainer.fit and training_step on each path (the budgets are 4 and 6).
    def __call__(self) -> Optional[Tensor]:
        trainer = self.trainer
        optimizer = trainer.optimizers[0]
        with begin_training_step(trainer) or NO_CONTEXT:
            output = trainer._training_step(self.batch, self.batch_idx)
        loss, self.outputs = training_step_loss(output, trainer.accumulate_grad_batches, trainer._wants_outputs)
        if trainer.skip_nonfinite and loss is not None:
            loss = finite_or_none(trainer, loss)
        if self.zero_grad:
            trainer._hooks.on_before_zero_grad(optimizer)
            zero_gradients(trainer, self.batch_idx, optimizer)
        if loss is not None:
            run_backward(trainer, loss)
        if self.step:
            before_optimizer_step(trainer, optimizer)
        return loss


def closure_step(trainer: "Trainer", batch: Any, batch_idx: int, zero_grad: bool, step: bool) -> Any:
    """The automatic step run as Lightning runs it: ``optimizer_step(..., closure)`` calls training_step."""
    module = trainer.lightning_module
    closure = _StepClosure(trainer, batch, batch_idx, zero_grad, step)
    if not step:  # accumulating: no optimizer step, the closure runs directly
        closure()
        return closure.outputs
    lightning_optimizer = trainer._lightning_optimizers[0]
    previous = module._current_fx_name
    set_hook_name(module, "optimizer_step")
    module.optimizer_step(trainer.current_epoch, batch_idx, lightning_optimizer, closure)
    set_hook_name(module, previous)
    trainer.state.global_step += 1
    return closure.outputs

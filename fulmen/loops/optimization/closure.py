"""The automatic step run as Lightning runs it, inside ``optimizer.step(closure)``: the Trainer picks it once per fit,
only when the module overrides ``optimizer_step`` or the optimizer needs a closure (LBFGS)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from torch import Tensor

from fulmen.core.hooks import set_hook_name
from fulmen.core.step import (NO_CONTEXT, before_optimizer_step, begin_training_step, finite_or_none,
                                    run_backward, training_step_loss, zero_gradients)

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer


def closure_step(trainer: "Trainer", batch: Any, batch_idx: int, zero_grad: bool, step: bool) -> Any:
    """The automatic step run as Lightning runs it: ``optimizer_step(..., closure)`` calls training_step."""
    module = trainer.lightning_module
    optimizer = trainer.optimizers[0]
    result: list[Any] = [{}]

    # The closure repeats the first half of automatic_step on purpose: a helper shared by both would put one more
    # frame between Trainer.fit and training_step on each path (the budgets are 4 and 6).
    def closure() -> Optional[Tensor]:
        with begin_training_step(trainer) or NO_CONTEXT:
            output = trainer._training_step(batch, batch_idx)
        loss, result[0] = training_step_loss(output, trainer.accumulate_grad_batches, trainer._wants_outputs)
        if trainer.skip_nonfinite and loss is not None:
            loss = finite_or_none(trainer, loss)
        if zero_grad:
            trainer._hooks.on_before_zero_grad(optimizer)
            zero_gradients(trainer, batch_idx, optimizer)
        if loss is not None:
            run_backward(trainer, loss)
        if step:
            before_optimizer_step(trainer, optimizer)
        return loss

    # LightningOptimizer.step sees this mark and does not wrap the closure again for the pre-step hooks.
    closure.runs_pre_step_hooks = True  # type: ignore[attr-defined]
    if not step:  # accumulating: no optimizer step, the closure runs directly
        closure()
        return result[0]
    lightning_optimizer = trainer._lightning_optimizers[0]
    previous = module._current_fx_name
    set_hook_name(module, "optimizer_step")
    module.optimizer_step(trainer.current_epoch, batch_idx, lightning_optimizer, closure)
    set_hook_name(module, previous)
    trainer.state.global_step += 1
    return result[0]

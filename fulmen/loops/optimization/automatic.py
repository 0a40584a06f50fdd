"""One training batch under automatic optimization: the flat step, and the pieces the closure step shares.

The default automatic step reads top to bottom::

    training_step -> [first batch of the window] on_before_zero_grad, optimizer_zero_grad
    -> on_before_backward, backward, on_after_backward
    -> [last batch of the window] unscale, on_before_optimizer_step, clip, optimizer.step, step schedulers

When nothing is hooked in between (``plain_step``, decided once per fit), the step is only ``training_step``,
``optimizer.zero_grad()``, ``loss.backward()`` and ``optimizer.step()``, as in a hand-written loop.

The pieces it shares with the other steps (the prologue, the loss split, backward with its hooks, the pre-step
unscale and clipping) are in ``fulmen/core/step.py``. ``closure_step`` (``closure.py``) runs them inside
``optimizer.step(closure)``, as Lightning does; manual optimization is ``manual.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import Tensor

from fulmen.loops.hooks import _noop
from fulmen.core.step import (NO_CONTEXT, before_optimizer_step, begin_training_step, finite_or_none,
                              nonscalar_loss_error, run_backward, training_step_loss, zero_gradients)

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer


def automatic_step(trainer: "Trainer", batch: Any, batch_idx: int, zero_grad: bool, step: bool) -> Any:
    """Forward, backward and (when ``step``) the optimizer step for one batch; returns the batch-end outputs."""
    optimizer = trainer.optimizers[0]
    context = begin_training_step(trainer)
    if context is None:  # the usual case: no context to enter on every step
        output = trainer._training_step(batch, batch_idx)
    else:
        with context:
            output = trainer._training_step(batch, batch_idx)
    if type(output) is Tensor and not trainer._wants_outputs and trainer.accumulate_grad_batches == 1:
        loss, outputs = output, None  # what training_step_loss would return, without the call
    else:
        loss, outputs = training_step_loss(output, trainer.accumulate_grad_batches, trainer._wants_outputs)
    if trainer.skip_nonfinite and loss is not None:
        loss = finite_or_none(trainer, loss)
    if trainer.state.plain_step and not trainer.gradient_clip_val:
        # Nothing runs between the torch calls (no hook, override or GradScaler: plain_step found this
        # once for the fit), so they are called directly: the same steps as below, without six calls.
        if zero_grad:
            optimizer.zero_grad()
        if loss is not None:
            try:
                loss.backward()
            except RuntimeError as err:
                clear = nonscalar_loss_error(loss, err)
                if clear is None:
                    raise
                raise clear from err
        if step:
            optimizer.step()
            trainer.state.global_step += 1
        return outputs
    if zero_grad:
        trainer._hooks.on_before_zero_grad(optimizer)
        zero_gradients(trainer, batch_idx, optimizer)
    if loss is not None:
        run_backward(trainer, loss)
    if step:
        step_optimizer(trainer, optimizer)
    return outputs


def plain_step(trainer: "Trainer") -> bool:
    """Whether nothing runs between the torch calls of the automatic step: no hook around backward or the optimizer
    step, no override of zero_grad, backward or clipping, no GradScaler. (Clipping by ``gradient_clip_val`` is
    checked at each step, as the value may change during a fit.)"""
    custom, hooks = trainer._custom, trainer._hooks
    return (trainer.lightning_module.automatic_optimization and trainer.precision_plugin.scaler is None
            and not (custom.optimizer_zero_grad or custom.backward or custom.configure_gradient_clipping)
            and all(getattr(hooks, name) is _noop for name in (
                "on_before_zero_grad", "on_before_backward", "on_after_backward", "on_before_optimizer_step")))


def forward_only_step(trainer: "Trainer", batch: Any, batch_idx: int, zero_grad: bool, step: bool) -> Any:
    """``training_step`` alone: no zero_grad, backward or optimizer step (so no global step either).
    StochasticWeightAveraging runs its batch-norm epoch with it, to re-estimate the statistics of averaged weights."""
    with begin_training_step(trainer) or NO_CONTEXT:
        output = trainer._training_step(batch, batch_idx)
    return training_step_loss(output, trainer.accumulate_grad_batches, trainer._wants_outputs)[1]


def step_optimizer(trainer: "Trainer", optimizer: Any) -> None:
    """The end of an accumulation window in the flat automatic step."""
    precision = trainer.precision_plugin
    if precision.scaler is not None and not any(p.grad is not None for g in optimizer.param_groups
                                                for p in g["params"]):
        # No batch of the window ran backward (each returned None, or skip_nonfinite dropped it): a GradScaler
        # has nothing to unscale or step, so the step is skipped as in Lightning; it still counts.
        trainer.state.global_step += 1
        return
    before_optimizer_step(trainer, optimizer)
    if precision.scaler is None:
        optimizer.step()
    else:
        precision.optimizer_step(optimizer)
    trainer.state.global_step += 1

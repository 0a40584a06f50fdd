"""One training batch under automatic optimization: the flat step, and the pieces the closure step shares.

The default automatic step reads top to bottom::

    training_step -> [first batch of the window] on_before_zero_grad, optimizer_zero_grad
    -> on_before_backward, backward, on_after_backward
    -> [last batch of the window] unscale, on_before_optimizer_step, clip, optimizer.step, step schedulers

When nothing is hooked in between (``plain_step``, decided once per fit), the step is only ``training_step``,
``optimizer.zero_grad()``, ``loss.backward()`` and ``optimizer.step()``, as in a hand-written loop.

``closure_step`` (``closure.py``) runs the same pieces inside ``optimizer.step(closure)``, as Lightning does; manual
optimization is ``manual.py``.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor

from fulmen.core.hooks import set_hook_name
from fulmen.loops.hooks import _noop
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_warn


def automatic_step(trainer: Any, batch: Any, batch_idx: int, zero_grad: bool, step: bool) -> Any:
    """Forward, backward and (when ``step``) the optimizer step for one batch; returns the batch-end outputs."""
    optimizer = trainer.optimizers[0]
    autocast = trainer.precision_plugin.autocast
    set_hook_name(trainer.lightning_module, "training_step")
    if autocast is None:  # the usual case: no context to enter on every step
        output = trainer._training_step(batch, batch_idx)
    else:
        with autocast():
            output = trainer._training_step(batch, batch_idx)
    if type(output) is Tensor and not trainer._wants_outputs and trainer.accumulate_grad_batches == 1:
        loss, outputs = output, None  # what training_step_loss would return, without the call
    else:
        loss, outputs = training_step_loss(output, trainer.accumulate_grad_batches, trainer._wants_outputs)
    if trainer.skip_nonfinite and loss is not None:
        loss = finite_or_none(trainer, loss)
    if trainer._plain_step and not trainer.gradient_clip_val:
        # Nothing runs between the torch calls (no hook, override or GradScaler: plain_step found this
        # once for the fit), so they are called directly: the same steps as below, without six calls.
        if zero_grad:
            optimizer.zero_grad()
        if loss is not None:
            try:
                loss.backward()
            except RuntimeError as err:
                clear = _nonscalar_loss_error(loss, err)
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


def plain_step(trainer: Any) -> bool:
    """Whether nothing runs between the torch calls of the automatic step: no hook around backward or the optimizer
    step, no override of zero_grad, backward or clipping, no GradScaler. (Clipping by ``gradient_clip_val`` is
    checked at each step, as the value may change during a fit.)"""
    custom, hooks = trainer._custom, trainer._hooks
    return (trainer.lightning_module.automatic_optimization and trainer.precision_plugin.scaler is None
            and not (custom.optimizer_zero_grad or custom.backward or custom.configure_gradient_clipping)
            and all(getattr(hooks, name) is _noop for name in (
                "on_before_zero_grad", "on_before_backward", "on_after_backward", "on_before_optimizer_step")))


def forward_only_step(trainer: Any, batch: Any, batch_idx: int, zero_grad: bool, step: bool) -> Any:
    """``training_step`` alone: no zero_grad, backward or optimizer step (so no global step either).
    StochasticWeightAveraging runs its batch-norm epoch with it, to re-estimate the statistics of averaged weights."""
    module = trainer.lightning_module
    with trainer.precision_plugin.forward_context():
        set_hook_name(module, "training_step")
        output = trainer._training_step(batch, batch_idx)
    return training_step_loss(output, trainer.accumulate_grad_batches, trainer._wants_outputs)[1]


def training_step_loss(output: Any, accumulate: int,
                       wants_outputs: bool = True) -> tuple[Optional[Tensor], Optional[dict[str, Any]]]:
    """Split a training_step result into the loss to backpropagate (divided by ``accumulate``) and the batch-end
    outputs, whose "loss" is that normalised loss, detached.

    When no ``on_train_batch_end`` hook reads the outputs (``wants_outputs`` False), they are not built: that is a
    detach and two objects less per step.
    """
    if type(output) is Tensor and not wants_outputs:
        return (output if accumulate == 1 else output / accumulate), None
    if isinstance(output, Tensor):
        loss, extra = output, {}
    elif isinstance(output, dict):
        if "loss" not in output:
            raise MisconfigurationException(
                f"training_step returned a dict without a 'loss' key (keys: {sorted(output)}); put the loss to "
                "backpropagate under 'loss'"
            )
        loss = output["loss"]
        extra = {k: v for k, v in output.items() if k != "loss"}
    elif output is None:
        rank_zero_warn("training_step returned None: this batch is skipped (no backward)")
        return None, {}
    else:
        raise MisconfigurationException(
            f"training_step must return a loss Tensor, a dict with a 'loss' key, or None; it returned "
            f"{type(output).__name__}"
        )
    if not isinstance(loss, Tensor):
        raise MisconfigurationException(f"training_step's loss must be a Tensor, not {type(loss).__name__}")
    if accumulate != 1:
        loss = loss / accumulate
    return loss, {"loss": loss.detach(), **extra}


def zero_gradients(trainer: Any, batch_idx: int, optimizer: Any) -> None:
    module = trainer.lightning_module
    if trainer._custom.optimizer_zero_grad:
        set_hook_name(module, "optimizer_zero_grad")
        module.optimizer_zero_grad(trainer.current_epoch, batch_idx, optimizer)
    else:
        optimizer.zero_grad()


def run_backward(trainer: Any, loss: Tensor, *args: Any, **kwargs: Any) -> None:
    """on_before_backward, backward of the (scaled) loss, on_after_backward."""
    hooks = trainer._hooks
    module = trainer.lightning_module
    hooks.on_before_backward(loss)
    scaler = trainer.precision_plugin.scaler
    scaled = loss if scaler is None else scaler.scale(loss)
    if trainer._custom.backward:
        previous = module._current_fx_name
        set_hook_name(module, "backward")
        module.backward(scaled, *args, **kwargs)
        set_hook_name(module, previous)
    else:
        try:  # free when nothing is raised; checking the loss's shape first would cost every step
            scaled.backward(*args, **kwargs)
        except RuntimeError as err:
            clear = _nonscalar_loss_error(loss, err)
            if clear is None:
                raise
            raise clear from err
    hooks.on_after_backward()


def _nonscalar_loss_error(loss: Tensor, err: RuntimeError) -> Optional[MisconfigurationException]:
    """A clear error when ``loss.backward()`` failed with ``err`` because the loss is not one number, else None."""
    if loss.dim() == 0 or "only for scalar outputs" not in str(err):
        return None
    return MisconfigurationException(
        f"training_step returned a loss of shape {tuple(loss.shape)}; return one number to backpropagate "
        "(reduce it: loss.mean() or loss.sum())")


def before_optimizer_step(trainer: Any, optimizer: Any) -> None:
    """Unscale, on_before_optimizer_step, and (automatic optimization) gradient clipping."""
    precision = trainer.precision_plugin
    if precision.scaler is not None:  # hooks and clipping must see the true gradients
        precision.unscale_gradients(optimizer)
    trainer._hooks.on_before_optimizer_step(optimizer)
    module = trainer.lightning_module
    if not module._automatic_optimization:
        return
    if trainer._custom.configure_gradient_clipping:
        set_hook_name(module, "configure_gradient_clipping")
        module.configure_gradient_clipping(optimizer, gradient_clip_val=trainer.gradient_clip_val,
                                           gradient_clip_algorithm=trainer.gradient_clip_algorithm)
    elif trainer.gradient_clip_val:
        trainer.precision_plugin.clip_gradients(optimizer, trainer.gradient_clip_val,
                                                trainer.gradient_clip_algorithm or "norm")


def finite_or_none(trainer: Any, loss: Tensor) -> Optional[Tensor]:
    """``Trainer(skip_nonfinite=True)``: the loss, or None (no backward for this batch) when it is NaN or infinite
    on any process. Checking reads the loss on the host: one sync a step, the price of the option."""
    bad = not bool(torch.isfinite(loss).all())
    if trainer.world_size > 1:  # every process skips the same batch, or DDP's gradient reduction would hang
        bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
    if bad:
        trainer.nonfinite_skipped += 1
        rank_zero_warn(f"training_step gave a non-finite loss at epoch {trainer.current_epoch}, batch "
                    f"{trainer.state.batch_idx}; its backward is skipped (Trainer(skip_nonfinite=True), "
                    f"{trainer.nonfinite_skipped} so far)")
    if not trainer.barebones:  # the running count, beside the user's metrics
        trainer.lightning_module.log("nonfinite_skipped", float(trainer.nonfinite_skipped))
    return None if bad else loss


def step_optimizer(trainer: Any, optimizer: Any) -> None:
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

"""The pieces of a training step that every step function shares, whoever runs it: the loops' automatic, closure,
manual and forward-only steps (``fulmen/loops/optimization/``), a strategy's own step (DeepSpeed's engine), and the
user's ``self.manual_backward(loss)`` and ``optimizer.step()`` (through the strategy).

They sit with the user-facing classes, below the engines and the loops, because ``LightningModule.manual_backward``
and ``LightningOptimizer.step`` run them too; the strategies and the loops import them from here. Each takes the
Trainer and reads what it needs off it.

Every step opens the same way (``begin_training_step``) and splits ``training_step``'s result the same way
(``training_step_loss``); the call of ``training_step`` itself stays in the step function, so that no frame of ours
sits between the step and the user's code.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Optional

import torch
from torch import Tensor

from fulmen.core.hooks import set_hook_name
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer


def begin_training_step(trainer: "Trainer") -> Optional[contextlib.AbstractContextManager[Any]]:
    """The prologue of every training step: ``self.log`` learns that ``training_step`` runs, and the precision's
    autocast context to run it in is returned (None when the forward runs as it is, so that the usual step enters
    no context at all)::

        context = begin_training_step(trainer)
        with context or NO_CONTEXT:
            output = trainer._training_step(batch, batch_idx)
    """
    set_hook_name(trainer.lightning_module, "training_step")
    autocast = trainer.precision_plugin.autocast
    return None if autocast is None else autocast()


# Entering it again and again is fine; one object for every step that has no autocast.
NO_CONTEXT = contextlib.nullcontext()


class HookedClosure:
    """A closure that runs the pre-step hooks (unscale, ``on_before_optimizer_step``, clipping) itself, as the
    closure step's does: ``LightningOptimizer.step`` then runs it as it is, instead of wrapping it to add them."""

    __slots__ = ()

    def __call__(self) -> Any:
        raise NotImplementedError


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


def nonscalar_loss_error(loss: Tensor, err: RuntimeError) -> Optional[MisconfigurationException]:
    """A clear error when ``loss.backward()`` failed with ``err`` because the loss is not one number, else None."""
    if loss.dim() == 0 or "only for scalar outputs" not in str(err):
        return None
    return MisconfigurationException(
        f"training_step returned a loss of shape {tuple(loss.shape)}; return one number to backpropagate "
        "(reduce it: loss.mean() or loss.sum())")


def zero_gradients(trainer: "Trainer", batch_idx: int, optimizer: Any) -> None:
    module = trainer.lightning_module
    if trainer._custom.optimizer_zero_grad:
        set_hook_name(module, "optimizer_zero_grad")
        module.optimizer_zero_grad(trainer.current_epoch, batch_idx, optimizer)
    else:
        optimizer.zero_grad()


def run_backward(trainer: "Trainer", loss: Tensor, *args: Any, **kwargs: Any) -> None:
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
            clear = nonscalar_loss_error(loss, err)
            if clear is None:
                raise
            raise clear from err
    hooks.on_after_backward()


def before_optimizer_step(trainer: "Trainer", optimizer: Any) -> None:
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


def finite_or_none(trainer: "Trainer", loss: Tensor) -> Optional[Tensor]:
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

"""The hook catalogue: the hooks a LightningModule and a LightningDataModule may override, and where each may log.

``ModelHooks``, ``DataHooks`` and ``CheckpointHooks`` hold the default of every hook (``LightningModule`` inherits
all three, ``LightningDataModule`` the data hooks), under the names Lightning gives them. Every hook a callback may
implement is listed in ``CALLBACK_HOOKS``; ``LOG_OPTIONS`` says where ``self.log`` may be called and with which
defaults. The dispatch that calls them in a run is ``fulmen.loops.hooks``.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, NamedTuple, Optional

import torch
from torch import Tensor

from fulmen.utilities.apply_to_collection import move_data_to_device
from fulmen.utilities.exceptions import MisconfigurationException

# Hooks a Callback may implement, in the order they first happen in a fit.
CALLBACK_HOOKS = (
    "setup", "on_fit_start", "on_sanity_check_start", "on_sanity_check_end",
    "on_train_start", "on_train_epoch_start", "on_train_batch_start",
    "on_before_zero_grad", "on_before_backward", "on_after_backward", "on_before_optimizer_step",
    "on_train_batch_end", "on_train_epoch_end", "on_train_end",
    "on_validation_start", "on_validation_epoch_start", "on_validation_batch_start", "on_validation_batch_end",
    "on_validation_epoch_end", "on_validation_end",
    "on_test_start", "on_test_epoch_start", "on_test_batch_start", "on_test_batch_end", "on_test_epoch_end",
    "on_test_end",
    "on_predict_start", "on_predict_epoch_start", "on_predict_batch_start", "on_predict_batch_end",
    "on_predict_epoch_end", "on_predict_end",
    "on_save_checkpoint", "on_load_checkpoint", "on_exception", "on_fit_end", "teardown",
)

# Module hooks with no callback twin, called only when the module overrides them (their defaults do nothing
# observable) -- except those in MODULE_HOOKS_WITH_DEFAULTS, whose default behaviour is part of the contract.
MODULE_ONLY_HOOKS = (
    "on_validation_model_zero_grad", "on_validation_model_eval", "on_validation_model_train",
    "on_test_model_eval", "on_test_model_train", "on_predict_model_eval",
)
MODULE_HOOKS_WITH_DEFAULTS = frozenset(
    {"on_validation_model_zero_grad", "on_validation_model_eval", "on_test_model_eval", "on_predict_model_eval"}
)


class LogOptions(NamedTuple):
    """Where ``self.log`` may be called: the allowed and default values of ``on_step`` and ``on_epoch``."""

    allowed_on_step: tuple[bool, ...]
    allowed_on_epoch: tuple[bool, ...]
    default_on_step: bool
    default_on_epoch: bool


_STEP = LogOptions((False, True), (False, True), True, False)
_EVAL_STEP = LogOptions((False, True), (False, True), False, True)
_EPOCH_ONLY = LogOptions((False,), (True,), False, True)

# The hooks of one training step (where a logged value is a step value of training, such as the loss).
TRAINING_STEP_HOOKS = frozenset(
    ("training_step", "on_train_batch_start", "on_train_batch_end", "on_before_backward", "backward",
     "on_after_backward", "on_before_optimizer_step", "optimizer_step", "configure_gradient_clipping",
     "clip_gradients", "on_before_zero_grad", "optimizer_zero_grad"))

# Hooks absent from this table (or mapped to None) may not log: predict, setup/teardown, configure_*, the
# *_dataloader and batch-transfer hooks, checkpoint hooks, lr_scheduler_step, the *_end of fit/train/eval stages.
LOG_OPTIONS: dict[str, Optional[LogOptions]] = {
    **dict.fromkeys(TRAINING_STEP_HOOKS, _STEP),
    **dict.fromkeys(
        ("validation_step", "test_step", "on_validation_batch_start", "on_validation_batch_end",
         "on_test_batch_start", "on_test_batch_end"),
        _EVAL_STEP,
    ),
    **dict.fromkeys(
        ("on_train_start", "on_validation_start", "on_test_start", "on_train_epoch_start", "on_train_epoch_end",
         "on_validation_epoch_start", "on_validation_epoch_end", "on_test_epoch_start", "on_test_epoch_end"),
        _EPOCH_ONLY,
    ),
}


def overrides(obj: Any, base: type, name: str) -> bool:
    """Whether ``type(obj)`` (or the instance itself) defines ``name`` differently from ``base``."""
    # Set to None (on the instance or the class: ``model.val_dataloader = None``) switches a hook off, as in Lightning.
    if name in getattr(obj, "__dict__", {}):  # patched on the instance
        return obj.__dict__[name] is not None
    found = getattr(type(obj), name, None)
    return found is not None and found is not getattr(base, name, None)


def set_hook_name(module: Any, name: Optional[str]) -> None:
    """Record which hook runs now, for ``self.log``.

    ``nn.Module.__setattr__`` costs about 1.5 us (it looks for parameters, buffers and submodules); the name is a
    plain string, so it is stored directly, at a tenth of that, as it happens on every step.
    """
    object.__setattr__(module, "_current_fx_name", name)


def positional_count(fn: Callable[..., Any]) -> int:
    """How many positional arguments a bound method takes (99 for ``*args``), read off its code object, which is
    far cheaper than ``inspect.signature`` (this runs at every fit)."""
    code = getattr(getattr(fn, "__func__", fn), "__code__", None)
    if code is None:
        try:
            params = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):
            return 99
        if any(p.kind == p.VAR_POSITIONAL for p in params):
            return 99
        return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
    if code.co_flags & inspect.CO_VARARGS:
        return 99
    return code.co_argcount - (1 if hasattr(fn, "__self__") else 0)


def takes_varargs(fn: Callable[..., Any]) -> bool:
    return any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in inspect.signature(fn).parameters.values())


class ModelHooks:
    """The hooks of a run that a LightningModule may override; each does nothing unless said otherwise.

    The Trainer calls the callbacks' hook of the same name first, then the module's.
    """

    def on_fit_start(self) -> None:
        """Start of ``fit``."""

    def on_fit_end(self) -> None:
        """End of ``fit``."""

    def on_train_start(self) -> None:
        """After the sanity check, before the first training epoch."""

    def on_train_end(self) -> None:
        """After the last training epoch."""

    def on_validation_start(self) -> None:
        """Start of a validation run."""

    def on_validation_end(self) -> None:
        """End of a validation run."""

    def on_test_start(self) -> None:
        """Start of a test run."""

    def on_test_end(self) -> None:
        """End of a test run."""

    def on_predict_start(self) -> None:
        """Start of a predict run."""

    def on_predict_end(self) -> None:
        """End of a predict run."""

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> Optional[int]:
        """Before ``training_step``; return -1 to end the epoch here."""

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """After the optimizer step of this batch; ``outputs`` holds the (accumulation-normalised) loss."""

    def on_validation_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Before ``validation_step``."""

    def on_validation_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """After ``validation_step``."""

    def on_test_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Before ``test_step``."""

    def on_test_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """After ``test_step``."""

    def on_predict_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Before ``predict_step``."""

    def on_predict_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """After ``predict_step``."""

    def on_validation_model_zero_grad(self) -> None:
        """Before validation inside fit: free the gradients' memory."""
        self.zero_grad(set_to_none=True)  # type: ignore[attr-defined]

    def on_validation_model_eval(self) -> None:
        """Put the model in eval mode for validation."""
        self.trainer.model.eval()  # type: ignore[attr-defined]

    def on_validation_model_train(self) -> None:
        """After validation; by default each submodule gets back the train/eval mode it had."""

    def on_test_model_eval(self) -> None:
        """Put the model in eval mode for test."""
        self.trainer.model.eval()  # type: ignore[attr-defined]

    def on_test_model_train(self) -> None:
        """After test; by default each submodule gets back the mode it had."""

    def on_predict_model_eval(self) -> None:
        """Put the model in eval mode for predict."""
        self.trainer.model.eval()  # type: ignore[attr-defined]

    def on_train_epoch_start(self) -> None:
        """Start of a training epoch."""

    def on_train_epoch_end(self) -> None:
        """End of a training epoch, after its validation."""

    def on_validation_epoch_start(self) -> None:
        """Start of a validation epoch."""

    def on_validation_epoch_end(self) -> None:
        """End of a validation epoch; epoch metrics logged here are reduced over its batches."""

    def on_test_epoch_start(self) -> None:
        """Start of a test epoch."""

    def on_test_epoch_end(self) -> None:
        """End of a test epoch."""

    def on_predict_epoch_start(self) -> None:
        """Start of a predict epoch."""

    def on_predict_epoch_end(self) -> None:
        """End of a predict epoch."""

    def on_before_zero_grad(self, optimizer: Any) -> None:
        """Before the gradients are zeroed."""

    def on_before_backward(self, loss: Tensor) -> None:
        """Before ``backward``."""

    def on_after_backward(self) -> None:
        """After ``backward``, before clipping and the optimizer step."""

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        """After gradients are unscaled, before clipping and ``optimizer.step()``."""

    def configure_sharded_model(self) -> None:
        """Deprecated name of ``configure_model``."""

    def configure_model(self) -> None:
        """Create layers here to build them directly on the device (called only if overridden)."""


class DataHooks:
    """The data hooks, shared by LightningModule and LightningDataModule (the datamodule's win when both
    override one)."""

    def __init__(self) -> None:
        super().__init__()
        self.prepare_data_per_node = True
        self.allow_zero_length_dataloader_with_multiple_devices = False

    def prepare_data(self) -> None:
        """Download or write data; runs once per node (or once overall with ``prepare_data_per_node=False``)."""

    def setup(self, stage: str) -> None:
        """Called at the start of fit / validate / test / predict ('fit', 'validate', 'test', 'predict'), on every
        process."""

    def teardown(self, stage: str) -> None:
        """Called at the end of fit / validate / test / predict; release what ``setup`` made."""

    def train_dataloader(self) -> Any:
        """The training data."""
        raise MisconfigurationException(
            f"{type(self).__name__} has no `train_dataloader()`; define it to return the training DataLoader"
        )

    def val_dataloader(self) -> Any:
        """The validation data (none by default)."""
        return []

    def test_dataloader(self) -> Any:
        """The test data (none by default)."""
        return []

    def predict_dataloader(self) -> Any:
        """The prediction data (none by default)."""
        return []

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Move ``batch`` to ``device``; override for custom batch types."""
        return move_data_to_device(batch, device)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Change the batch before it is moved to the device."""
        return batch

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Change the batch after it is on the device (e.g. GPU augmentations)."""
        return batch


class CheckpointHooks:
    """The checkpoint hooks of a LightningModule (and of a LightningDataModule)."""

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add entries to (or change) a checkpoint being saved; values must be plain data (tensors, numbers,
        strings, lists, dicts) so the file still loads with ``weights_only=True``."""

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Read your entries from a checkpoint, before its weights are loaded."""

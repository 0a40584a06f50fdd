"""A tuning trial: a few steps of the run with a setting changed, after which the model and the Trainer are put back
exactly as they were (weights, optimizer, scheduler and scaler states, loop counters, settings, random states), so
the run that follows is the one it would have been with the tuned value set from the start."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Optional

import torch

from fulmen.loops.hooks import Hooks
from fulmen.utilities.apply_to_collection import apply_to_collection
from fulmen.utilities.seed import isolate_rng

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer

# The Trainer settings a trial changes and puts back.
_SETTINGS = ("callbacks", "loggers", "max_steps", "min_steps", "min_epochs", "limit_train_batches",
             "limit_val_batches", "limit_test_batches", "limit_predict_batches", "num_sanity_val_steps", "_hooks",
             "_wants_outputs", "_results", "_signal_agreement", "_verbose")


def _host_copy(obj: Any) -> Any:
    """A copy with every tensor on the host: the saved state must not take device memory from the trials."""
    return apply_to_collection(obj, torch.Tensor, lambda t: t.detach().to("cpu", copy=True))


@contextlib.contextmanager
def trial(trainer: "Trainer", callbacks: list[Any], max_steps: Optional[int] = None) -> Iterator[None]:
    """Run the block with only ``callbacks``, no loggers, no validation, no sanity check and at most ``max_steps``
    more optimizer steps; then put the model and the Trainer back as they were (see the module docstring)."""
    module = trainer.lightning_module
    scaler = trainer.precision_plugin.scaler
    saved = {
        "weights": _host_copy(module.state_dict()),
        "optimizers": [_host_copy(opt.state_dict()) for opt in trainer.optimizers],
        "schedulers": list(trainer.lr_scheduler_configs),
        "scheduler_states": [copy.deepcopy(c.scheduler.state_dict()) for c in trainer.lr_scheduler_configs],
        "scaler": scaler.state_dict() if scaler is not None else {},
        "state": trainer.state.state_dict(),
        "stage": trainer.state.stage,
        "settings": {name: getattr(trainer, name) for name in _SETTINGS},
    }
    trainer.callbacks, trainer.loggers = list(callbacks), []
    trainer._hooks = Hooks(trainer, module, callbacks)
    trainer._wants_outputs = True
    trainer._signal_agreement = None  # (the Tuner runs on one process; see BatchSizeFinder.setup)
    trainer._verbose = False
    if max_steps is not None:
        trainer.max_steps = trainer.global_step + max_steps
    # A diverging range test must be able to stop at once.
    trainer.min_steps, trainer.min_epochs = None, 0
    trainer.limit_val_batches, trainer.num_sanity_val_steps = 0, 0
    try:
        with isolate_rng():
            yield
    finally:
        for name, value in saved["settings"].items():
            setattr(trainer, name, value)
        module.load_state_dict(saved["weights"])
        module.zero_grad()
        for opt, state in zip(trainer.optimizers, saved["optimizers"]):
            opt.load_state_dict(state)
        trainer.lr_scheduler_configs[:] = saved["schedulers"]
        for config, state in zip(trainer.lr_scheduler_configs, saved["scheduler_states"]):
            config.scheduler.load_state_dict(state)
        if saved["scaler"]:
            scaler.load_state_dict(saved["scaler"])
        trainer.state.load_state_dict(saved["state"])
        trainer.state.should_stop = False
        trainer.state.stage = saved["stage"]
        trainer._metrics.drop_all()
        reload_data(trainer)


def reload_data(trainer: "Trainer") -> None:
    """Make the next loop ask for its loaders again (from the hooks: the batch size may have changed)."""
    trainer.train_dataloader = None
    trainer._eval.clear()

"""Which loaders a run uses: the data source of each stage, batch limits, and when validation runs."""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Optional, Union

from fulmen.core.datamodule import LightningDataModule
from fulmen.core.hooks import overrides, positional_count, set_hook_name, takes_varargs
from fulmen.logging import MetricStore
from fulmen.loops import fetchers
from fulmen.core.module import LightningModule
from fulmen.trainer.states import RunningStage
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_warn
from fulmen.utilities.warnings import PossibleUserWarning

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer


@dataclass
class EvalData:
    """The loaders of one evaluation stage, their batch limits, and its metric store."""

    loaders: list[Any]
    limits: list[Union[int, float]]
    sanity_limits: list[Union[int, float]]
    several: bool
    store: MetricStore
    takes_batch_idx: bool
    seen: list[int] = field(default_factory=list)


def data_source(trainer: "Trainer", prefix: str) -> Any:
    """Loaders given to the method, else the datamodule's hook, else the module's hook (if overridden)."""
    given = trainer._eval_sources.get(prefix) if prefix != "train" else trainer._train_source
    if given is not None:
        return given
    hook = f"{prefix}_dataloader"
    for owner, base in ((trainer.datamodule, LightningDataModule), (trainer.lightning_module, LightningModule)):
        if owner is not None and overrides(owner, base, hook):
            module = trainer.lightning_module
            set_hook_name(module, hook)
            try:
                return getattr(owner, hook)()
            finally:
                set_hook_name(module, None)
    return None

def _sampler_args(trainer: "Trainer", train: bool, predicting: bool = False) -> Optional[dict[str, Any]]:
    """How to split a loader between the processes (``fetchers.distributed_sampler``'s arguments), or None: one
    process, or ``use_distributed_sampler=False`` (the user's loaders split the data themselves)."""
    split = trainer.strategy.distributed_sampler_kwargs
    if split is None or not trainer.use_distributed_sampler:
        return None
    return {**split, "train": train and not trainer.overfit_batches, "predicting": predicting}


def load_train_data(trainer: "Trainer") -> None:
    if trainer.train_dataloader is not None:
        return
    source = data_source(trainer, "train")
    if source is None:
        raise MisconfigurationException(
            "No training data: pass train_dataloaders= or datamodule= to Trainer.fit, or define "
            f"train_dataloader() on {type(trainer.lightning_module).__name__}"
        )
    loader = fetchers.as_train_loader(source)
    loader = fetchers.prepare_loader(loader, trainer.global_rank, shuffle_off=bool(trainer.overfit_batches),
                                  distributed=_sampler_args(trainer, train=True))
    length = fetchers.loader_length(loader)
    if length == 0:
        raise MisconfigurationException(
            "The training loader is empty (0 batches); check the dataset size, batch_size and drop_last, or "
            "pass limit_train_batches=0 to skip training on purpose"
        )
    trainer.train_dataloader = loader
    trainer.num_training_batches = fetchers.limited_length(length, trainer.limit_train_batches, "limit_train_batches")
    trainer.state.last_train_reload = trainer.state.epoch
    set_val_check(trainer, length)

def set_val_check(trainer: "Trainer", length: Union[int, float]) -> None:
    interval = trainer.val_check_interval
    trainer.state.val_time_interval = None
    if isinstance(interval, timedelta):
        trainer.state.val_time_interval = interval.total_seconds()
        trainer.val_check_batch = float("inf")
    elif isinstance(interval, int):
        if trainer.check_val_every_n_epoch is not None and interval > trainer.num_training_batches:
            raise ValueError(
                f"Trainer(val_check_interval={interval}) is more than the {trainer.num_training_batches} training "
                "batches of an epoch; lower it, set check_val_every_n_epoch=None to count batches across "
                "epochs, or limit_val_batches=0 to turn validation off"
            )
        trainer.val_check_batch = interval
    elif trainer.num_training_batches == float("inf"):
        if interval != 1.0:
            raise MisconfigurationException(
                f"Trainer(val_check_interval={interval}) is a fraction, but the training data has no length; "
                "use 1.0 or an int number of batches"
            )
        trainer.val_check_batch = float("inf")
    else:
        trainer.val_check_batch = max(1, int(trainer.num_training_batches * interval))
    trainer.state.last_val_time = time.monotonic()

def reload_data_if_due(trainer: "Trainer") -> None:
    n = trainer.reload_dataloaders_every_n_epochs
    if n and trainer.state.epoch - trainer.state.last_train_reload >= n:
        trainer.train_dataloader = None
        load_train_data(trainer)
        trainer._eval.pop(RunningStage.VALIDATING, None)

def eval_data(trainer: "Trainer", stage: RunningStage) -> EvalData:
    """The loaders of an evaluation stage, loaded on first use (the sanity check shares validation's)."""
    key = RunningStage.VALIDATING if stage == RunningStage.SANITY_CHECKING else stage
    data = trainer._eval.get(key)
    if data is not None:
        return data
    prefix = {RunningStage.VALIDATING: "val", RunningStage.TESTING: "test",
              RunningStage.PREDICTING: "predict"}[key]
    limit = {"val": trainer.limit_val_batches, "test": trainer.limit_test_batches,
             "predict": trainer.limit_predict_batches}[prefix]
    module = trainer.lightning_module
    assert module is not None
    loaders: list[Any] = []
    several = False
    if limit != 0:
        source = data_source(trainer, prefix)
        if source is None and key != RunningStage.VALIDATING:
            raise MisconfigurationException(
                f"No {prefix} data: pass dataloaders= or datamodule= to Trainer."
                f"{'test' if prefix == 'test' else 'predict'}, or define {prefix}_dataloader()"
            )
        if source is not None:
            loaders, several = fetchers.as_eval_loaders(source, f"{prefix}_dataloaders" if prefix == "val" else "dataloaders")
            split = _sampler_args(trainer, train=False, predicting=key == RunningStage.PREDICTING)
            if any(fetchers.is_shuffled(dl) for dl in loaders):
                rank_zero_warn(f"The {prefix}_dataloader shuffles its data; evaluation does not need it and "
                               "reads the same samples either way: pass shuffle=False", category=PossibleUserWarning)
            loaders = [fetchers.prepare_loader(dl, trainer.global_rank, distributed=split) for dl in loaders]
    limits = [fetchers.num_batches(dl, limit, f"limit_{prefix}_batches") for dl in loaders]
    sanity = trainer.num_sanity_val_steps
    sanity_limits = [min(n, sanity) for n in limits]  # (inf: every batch)
    step_name = {"val": "validation_step", "test": "test_step", "predict": "predict_step"}[prefix]
    step = getattr(module, step_name)
    if several and "dataloader_idx" not in inspect.signature(step).parameters and not takes_varargs(step):
        raise MisconfigurationException(
            f"There are {len(loaders)} {prefix} loaders but {step_name} has no dataloader_idx argument; define "
            f"{step_name}(self, batch, batch_idx, dataloader_idx=0)"
        )
    data = EvalData(loaders, limits, sanity_limits, several, MetricStore(training=False),
                     positional_count(step) != 1, [0] * len(loaders))
    trainer._eval[key] = data
    return data

def validation_enabled(trainer: "Trainer", warn: bool = False) -> bool:
    """Whether fit validates: a ``validation_step``, val data, and ``limit_val_batches`` above 0. With only one of
    the first two and ``warn`` (once per fit), warn that the val loop is skipped, as Lightning does."""
    module = trainer.lightning_module
    if module is None:
        return False
    has_step = overrides(module, LightningModule, "validation_step")
    has_data = trainer._eval_sources.get("val") is not None or any(
        owner is not None and overrides(owner, base, "val_dataloader")
        for owner, base in ((trainer.datamodule, LightningDataModule), (module, LightningModule)))
    if warn and has_data and not has_step:
        rank_zero_warn("You passed in a `val_dataloader` but have no `validation_step`. Skipping val loop.")
    elif warn and has_step and not has_data:
        rank_zero_warn("You defined a `validation_step` but have no `val_dataloader`. Skipping val loop.",
                       category=PossibleUserWarning)
    return has_step and has_data and trainer.limit_val_batches != 0
    if trainer._eval_sources.get("val") is not None:
        return True
    for owner, base in ((trainer.datamodule, LightningDataModule), (module, LightningModule)):
        if owner is not None and overrides(owner, base, "val_dataloader"):
            return True
    return False

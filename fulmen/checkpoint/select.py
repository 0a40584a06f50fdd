"""Which file ``ckpt_path`` means: a path or URL, "best", "last" or "hpc" (Lightning's rules), loaded safely."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Optional

from fulmen.callbacks.on_exception_checkpoint import OnExceptionCheckpoint
from fulmen.checkpoint import io
from fulmen.checkpoint.preemption import PREEMPTED_NAME, hpc_checkpoint, preempted_folder, slurm_managed
from fulmen.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer


def _exception_checkpoints(trainer: "Trainer") -> list[Any]:
    return [cb for cb in trainer.callbacks if isinstance(cb, OnExceptionCheckpoint)]


def select(trainer: "Trainer", fn: str, ckpt_path: Any, model_provided: bool,
           weights_only: Optional[bool]) -> tuple[Optional[str], Optional[dict[str, Any]]]:
    """The checkpoint a run starts from, and its contents (None, None for none). With several processes, rank 0
    chooses the file and every rank loads that one."""
    path, checkpoint = _select(trainer, fn, ckpt_path, model_provided, weights_only)
    if trainer.world_size == 1:
        return path, checkpoint
    chosen = trainer.strategy.broadcast(path)
    if chosen != path:
        return chosen, (trainer.strategy.load_checkpoint(chosen, weights_only=weights_only) if chosen is not None else None)
    return path, checkpoint


def _select(trainer: "Trainer", fn: str, ckpt_path: Any, model_provided: bool,
            weights_only: Optional[bool]) -> tuple[Optional[str], Optional[dict[str, Any]]]:
    if ckpt_path is None and slurm_managed() and hpc_checkpoint(trainer.default_root_dir):
        ckpt_path = "hpc"
    on_exception = _exception_checkpoints(trainer)
    if ckpt_path is None and on_exception and fn == "fit":
        ckpt_path = "last"
    if ckpt_path is None and model_provided:
        return None, None
    if ckpt_path is None:
        # validate/test/predict() without a model after a fit: Lightning evaluates the best checkpoint.
        rank_zero_warn(f"Trainer.{fn}() was called without a model: the best checkpoint of the previous fit is "
                       f"used. Pass {fn}(ckpt_path='best') (or 'last', or a path) to silence this warning")
        ckpt_path = "best"
    if ckpt_path == "best":
        return _load_best(trainer, fn, weights_only)
    if ckpt_path == "last":
        return _load_last(trainer, fn, on_exception, weights_only)
    if ckpt_path == "hpc":
        path = hpc_checkpoint(trainer.default_root_dir)
        if path is None:
            raise ValueError(f"Trainer.{fn}(ckpt_path='hpc'): no hpc_ckpt_<N>.ckpt in {trainer.default_root_dir!r}; "
                             "pass the path of a checkpoint")
        return path, trainer.strategy.load_checkpoint(path, weights_only=weights_only)
    if not isinstance(ckpt_path, (str, os.PathLike)):
        raise TypeError(f"Trainer.{fn}(ckpt_path={ckpt_path!r}) must be a path, a URL, 'best', 'last' or 'hpc'")
    path = os.fspath(ckpt_path)
    return path, trainer.strategy.load_checkpoint(path, weights_only=weights_only)


def _load_best(trainer: "Trainer", fn: str, weights_only: Optional[bool]) -> tuple[str, dict[str, Any]]:
    callbacks = trainer.checkpoint_callbacks
    if not callbacks:
        raise ValueError(f"Trainer.{fn}(ckpt_path='best') needs a ModelCheckpoint callback, and this Trainer has "
                         "none (enable_checkpointing=False?); pass the path of a checkpoint instead")
    if len(callbacks) > 1:
        rank_zero_warn(f"Trainer.{fn}(ckpt_path='best') with {len(callbacks)} ModelCheckpoint callbacks: the first "
                       "one's best checkpoint is used")
    best = callbacks[0].best_model_path
    if not best:
        if trainer.fast_dev_run:
            raise ValueError(f"Trainer.{fn}(ckpt_path='best') cannot work with fast_dev_run, which saves no "
                             "checkpoints; pass the path of a checkpoint")
        raise ValueError(f"Trainer.{fn}(ckpt_path='best'): the ModelCheckpoint has saved no checkpoint yet (fit "
                         "first, or check its monitor and save_top_k); pass the path of a checkpoint instead")
    return best, trainer.strategy.load_checkpoint(best, weights_only=weights_only)


def _load_last(trainer: "Trainer", fn: str, on_exception: list[Any],
               weights_only: Optional[bool]) -> tuple[Optional[str], Optional[dict[str, Any]]]:
    """The newest complete checkpoint of the checkpoint callbacks (and of a preemption); one that fails to load is
    skipped."""
    candidates: set[str] = {os.path.join(preempted_folder(trainer), PREEMPTED_NAME)}
    hpc = hpc_checkpoint(trainer.default_root_dir)
    if hpc is not None:
        candidates.add(hpc)
    for cb in on_exception:
        candidates.add(cb.ckpt_path)
    for cb in trainer.checkpoint_callbacks:
        candidates.update(cb.last_checkpoints(trainer))
    stamped = []
    for path in candidates:
        if io.exists(path):
            stamped.append((io.modified_time(path), path))
    for _, path in sorted(stamped, reverse=True):
        try:
            return path, trainer.strategy.load_checkpoint(path, weights_only=weights_only)
        except (ValueError, KeyError) as err:
            rank_zero_warn(f"Skipping checkpoint {path!r}, which does not load ({err}); trying an older one")
    rank_zero_warn(f"Trainer.{fn}(ckpt_path='last'): there is no checkpoint to resume from yet, so the run starts "
                   "from scratch (ModelCheckpoint(save_last=True) keeps one)")
    return None, None

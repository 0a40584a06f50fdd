"""Exact resume: where a checkpoint was taken, what the run must redo, and how the data picks up at that batch.

A checkpoint records where the fit loop was (``TrainerState.phase``, a ``LoopPhase``; the fit loop sets it as it
passes each point, and a preemption fixes it in ``save_position``). What resume does for each phase is in
``LoopPhase``'s docstring (``fulmen/trainer/states.py``): start the epoch, run batch k again, finish batch k, go on
at batch k+1, or finish the epoch.

The record holds the random states (python, numpy, torch, CUDA, XLA) at the checkpoint and at the start of the epoch,
the accumulated gradients when the checkpoint falls inside an accumulation window, and the last callback metrics
(which plateau schedulers read). The epoch's data order is rebuilt by setting the random states back to those of
the epoch start while the loader's iterator is created; the batches already consumed are then skipped at the
sampler, so their data is never loaded; then the random states of the checkpoint come back.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Union

import torch
from torch.utils.data import DataLoader, IterableDataset

from fulmen.loops.fetchers import with_sampler
from fulmen.trainer.states import LoopPhase, TrainerFn
from fulmen.utilities.metric_state import metric_states
from fulmen.utilities.rank_zero import rank_zero_warn
from fulmen.utilities.seed import capture_rng, restore_rng

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer

RECORD_VERSION = 1


# ---------------------------------------------------------------------------------------------- random states
def plain_rng(states: dict[str, Any]) -> dict[str, Any]:
    """``capture_rng``'s output as plain data (tensors and numbers), for a checkpoint."""
    if isinstance(states["python"], dict):  # already plain (the epoch start of a resumed epoch)
        return states
    version, words, gauss = states["python"]
    out = dict(states, python={"version": version, "state": torch.tensor(words, dtype=torch.int64), "gauss": gauss})
    if "numpy" in states:
        np_state = states["numpy"]
        out["numpy"] = {"bit_generator": np_state["bit_generator"],
                        "key": torch.from_numpy(np_state["state"]["key"].astype("int64")),
                        "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                        "gauss": float(np_state["gauss"])}
    return out


def _generators(loader: Any) -> list[torch.Generator]:
    """The torch.Generator objects that decide a DataLoader's order (its own, its sampler's), without duplicates."""
    found: list[torch.Generator] = []
    for obj in (loader, getattr(loader, "sampler", None),
                getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
        gen = getattr(obj, "generator", None)
        if isinstance(gen, torch.Generator) and all(gen is not g for g in found):
            found.append(gen)
    return found


def capture_epoch_start(loader: Any) -> dict[str, Any]:
    """What decides an epoch's data order: the global random states and the loader's generators, taken just
    before the epoch's iterator is created."""
    return {"rng": capture_rng(), "generators": [g.get_state() for g in _generators(loader)]}


# ---------------------------------------------------------------------------------------------- position
def position_of(trainer: "Trainer", phase: Optional[LoopPhase] = None) -> dict[str, Any]:
    """Where the loop is now: its phase (``LoopPhase``) and the batch counts that go with it, as plain data."""
    state = trainer.state
    if phase is None and state.save_position is not None:  # a preemption checkpoint fixed it
        phase = state.save_position["phase"]
    if phase is None:
        # in_epoch (not the status) decides: on_exception checkpoints are taken after the status became INTERRUPTED.
        in_fit_epoch = state.fn == TrainerFn.FITTING and state.in_epoch
        phase = state.phase if in_fit_epoch else LoopPhase.BETWEEN_EPOCHS
    if phase.batch_unfinished:
        done, total, is_last = state.batch_idx + 1, state.total_batch_idx + 1, state.is_last_batch
    elif phase == LoopPhase.BATCH_END_DONE:
        done, total, is_last = state.batch_idx + 1, state.total_batch_idx, state.is_last_batch
    elif phase == LoopPhase.EPOCH_END:
        done, total, is_last = state.batch_idx + 1, state.total_batch_idx, True
    elif phase == LoopPhase.BATCH_START:
        done, total, is_last = state.batch_idx, state.total_batch_idx, False
    else:
        done, total, is_last = 0, state.total_batch_idx, False
    return {"phase": phase, "epoch": state.epoch, "batches_done": done, "total_batches_done": total,
            "is_last_batch": is_last}


def resume_record(trainer: "Trainer", position: dict[str, Any]) -> dict[str, Any]:
    """fulmen's ``fulmen`` checkpoint entry: the position, random states, window gradients, callback metrics."""
    record: dict[str, Any] = {
        "version": RECORD_VERSION,
        # (the phase as its plain string: a checkpoint holds no enum)
        "position": {**position, "phase": position["phase"].value, **trainer.state.state_dict(),
                     "epoch_start_step": trainer.state.epoch_step_start},
        "rng": plain_rng(_rng_to_save(trainer)),
        "epoch_start": _plain_epoch_start(trainer.state.epoch_start) if position["phase"].mid_epoch else None,
        "callback_metrics": {k: v.detach().clone() for k, v in trainer.callback_metrics.items()
                             if isinstance(v, torch.Tensor)},
    }
    module = trainer.lightning_module
    accumulate = trainer.accumulate_grad_batches
    if (module is not None and module.automatic_optimization and accumulate > 1
            and position["phase"].mid_epoch and position["batches_done"] % accumulate):
        # Inside an accumulation window: the gradients summed so far are part of the state.
        record["grads"] = {name: local_tensor(p.grad).detach().clone() for name, p in module.named_parameters()
                           if p.grad is not None}
    if position["phase"].mid_epoch or position["phase"] == LoopPhase.EPOCH_END:
        record["train_metrics"] = trainer._train_store.state_dict()  # the epoch aggregates so far
        record["metric_states"] = metric_states(module)  # torchmetrics objects: what their compute() reads
    loader = trainer.train_dataloader
    if _is_stateful(loader) and position["phase"].mid_epoch:
        record["loader"] = loader.state_dict()
    if trainer.world_size > 1:
        # Each process has its own random states, data position, local gradients (inside an accumulation window,
        # before DDP reduces them) and running sums: the file (written by rank 0) holds every rank's.
        own = {key: record[key] for key in PER_RANK if key in record}
        record["per_rank"] = trainer.strategy.all_gather_object(own)
    return record


PER_RANK = ("rng", "epoch_start", "grads", "train_metrics", "metric_states", "loader")


def local_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """This process's part of a sharded (DTensor) tensor, as a plain tensor a safe load reads; others as they are."""
    return tensor.to_local() if hasattr(tensor, "to_local") and hasattr(tensor, "placements") else tensor


def take_own_record(record: dict[str, Any], rank: int, world_size: int) -> None:
    """Replace, in a loaded ``fulmen`` record, what differs between processes by this rank's own values."""
    per_rank = record.get("per_rank")
    if not per_rank:
        return
    if len(per_rank) != world_size:
        rank_zero_warn(f"The checkpoint was written by {len(per_rank)} processes and is resumed by {world_size}: "
                       "the random states and data positions of rank 0 are used, so the run is not exact")
        return
    for key in PER_RANK:
        record.pop(key, None)
    record.update(per_rank[rank])


def _rng_to_save(trainer: "Trainer") -> dict[str, Any]:
    fixed = trainer.state.save_position
    if fixed is not None and fixed.get("rng") is not None:
        return fixed["rng"]  # from before the validation that a preemption abandoned
    return capture_rng()


def _plain_epoch_start(epoch_start: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
    if epoch_start is None:
        return None
    return dict(epoch_start, rng=plain_rng(epoch_start["rng"]))


def _is_stateful(loader: Any) -> bool:
    return callable(getattr(loader, "state_dict", None)) and callable(getattr(loader, "load_state_dict", None))


# ---------------------------------------------------------------------------------------------- the plan
@dataclass
class ResumePlan:
    """What the fit loop does differently in the first epoch after a checkpoint is loaded."""

    epoch: int
    phase: LoopPhase
    batches_done: int
    is_last_batch: bool
    rng: Optional[dict[str, Any]] = None
    epoch_start: Optional[dict[str, Any]] = None
    loader_state: Optional[dict[str, Any]] = None
    # Whether the checkpoint's epoch was under way (Lightning's epoch progress: made ready or started but not
    # processed): then the resumed fit has no sanity check, as in Lightning.
    epoch_unfinished: bool = True

    @property
    def mid_epoch(self) -> bool:
        return self.phase.mid_epoch

    @property
    def tail(self) -> bool:
        """Whether the last consumed batch still has its end of batch to finish (validation, counters)."""
        return self.phase.batch_unfinished


def plan_from_checkpoint(checkpoint: dict[str, Any]) -> tuple[ResumePlan, dict[str, int]]:
    """The resume plan and the loop counters in a checkpoint written by fulmen, or by Lightning (no exact record:
    its data position is taken from the progress counters, and the order of a shuffled epoch cannot be rebuilt)."""
    plan, counters = _plan(checkpoint)
    epoch_progress = ((checkpoint.get("loops") or {}).get("fit_loop") or {}).get("epoch_progress", {})
    current = epoch_progress.get("current") if isinstance(epoch_progress, dict) else None
    if isinstance(current, dict) and "processed" in current:
        plan.epoch_unfinished = any(int(current.get(k, 0)) != int(current["processed"]) for k in ("ready", "started"))
    return plan, counters


def _plan(checkpoint: dict[str, Any]) -> tuple[ResumePlan, dict[str, int]]:
    record = checkpoint.get("fulmen")
    if isinstance(record, dict) and "position" in record:
        pos = record["position"]
        counters = {k: int(pos[k]) for k in ("epoch", "global_step", "batches_that_stepped", "batch_idx",
                                             "total_batch_idx", "val_runs", "epoch_start_step") if k in pos}
        plan = ResumePlan(int(pos["epoch"]), LoopPhase(pos["phase"]), int(pos["batches_done"]),
                          bool(pos["is_last_batch"]), record.get("rng"), record.get("epoch_start"),
                          record.get("loader"))
        return plan, counters
    return _plan_from_lightning(checkpoint)


def _plan_from_lightning(checkpoint: dict[str, Any]) -> tuple[ResumePlan, dict[str, int]]:
    epoch = int(checkpoint.get("epoch", 0))
    fit_loop = (checkpoint.get("loops") or {}).get("fit_loop") or {}
    progress = fit_loop.get("epoch_loop.batch_progress", {})
    current = progress.get("current", {})
    total = progress.get("total", {})
    processed = int(current.get("processed", 0))
    stepped = int(fit_loop.get("epoch_loop.state_dict", {}).get("_batches_that_stepped", 0))
    counters = {"global_step": int(checkpoint.get("global_step", 0)), "batches_that_stepped": stepped,
                "total_batch_idx": int(total.get("processed", 0)), "epoch": epoch}
    epoch_progress = fit_loop.get("epoch_progress", {}).get("current", {})
    in_epoch = int(epoch_progress.get("started", epoch)) > int(epoch_progress.get("completed", epoch))
    if not in_epoch or processed == 0 or progress.get("is_last_batch", False):
        # Between epochs, or at the end of epoch ``epoch`` (its last batch done): start the next one.
        next_epoch = epoch + 1 if in_epoch and processed else epoch
        counters["epoch"] = next_epoch
        counters["epoch_start_step"] = counters["global_step"]
        return ResumePlan(next_epoch, LoopPhase.BETWEEN_EPOCHS, 0, False), counters
    counters["batch_idx"] = processed - 1
    return ResumePlan(epoch, LoopPhase.BATCH_END_DONE, processed, False), counters


# ---------------------------------------------------------------------------------------------- the data
class _SkipFirst:
    """A sampler (or batch sampler) that draws its first ``skip`` items without yielding them, then sets the
    random states to ``rng`` (those the run must continue with) before yielding the rest."""

    def __init__(self, inner: Any, skip: int, rng: Optional[dict[str, Any]]) -> None:
        self.inner = inner
        self.skip = skip
        self.rng = rng

    def __iter__(self) -> Iterator[Any]:
        it = iter(self.inner)
        for _ in range(self.skip):
            if next(it, _END) is _END:
                return
        if self.rng is not None:
            restore_rng(self.rng)
            self.rng = None
        yield from it

    def __len__(self) -> int:
        return max(0, len(self.inner) - self.skip)


_END = object()


def _with_sampler(loader: DataLoader, skip: int, rng: Optional[dict[str, Any]]) -> DataLoader:
    """A copy of ``loader`` whose (batch) sampler skips the first ``skip`` batches."""
    if loader.batch_sampler is not None:
        return with_sampler(loader, batch_sampler=_SkipFirst(loader.batch_sampler, skip, rng), persistent_workers=False)
    return with_sampler(loader, sampler=_SkipFirst(loader.sampler, skip, rng), persistent_workers=False)


def resumed_batches(loader: Any, skip: int, epoch_start: Optional[dict[str, Any]],
                    loader_state: Optional[dict[str, Any]] = None) -> Iterator[Any]:
    """An iterator over the epoch's batches from batch ``skip`` on, in the order the interrupted epoch had.

    The random states are set to those of the epoch start while the iterator is created (that is when a shuffling
    sampler and the worker seeds draw), then set back to the current ones before the first remaining batch loads.
    A loader with its own ``state_dict`` (torchdata's StatefulDataLoader) restores its position itself.
    """
    now = capture_rng()
    if loader_state is not None and _is_stateful(loader):
        loader.load_state_dict(loader_state)
        it = iter(loader)
        restore_rng(now)
        return it
    if epoch_start is not None:
        restore_rng(epoch_start["rng"])
        for gen, gen_state in zip(_generators(loader), epoch_start["generators"]):
            gen.set_state(gen_state)
    if skip == 0:
        it = iter(loader)
        restore_rng(now)
        return it
    if (isinstance(loader, DataLoader) and not isinstance(loader.dataset, IterableDataset)
            and not _is_stateful(loader)):
        if loader.num_workers > 0 and loader.persistent_workers:
            rank_zero_warn("Resuming mid-epoch with persistent_workers=True: the worker processes restart, so "
                           "random numbers drawn inside them (augmentation) differ from the interrupted run")
        return iter(_with_sampler(loader, skip, now))
    # No sampler to skip at (an IterableDataset, a generator, a CombinedLoader): read and drop the batches.
    it = iter(loader)
    for _ in range(skip):
        if next(it, _END) is _END:
            break
    restore_rng(now)
    return it


def warn_if_inexact(loader: Any, plan: ResumePlan) -> None:
    """Say when a mid-epoch resume cannot rebuild the interrupted epoch exactly."""
    if plan.epoch_start is None:
        rank_zero_warn(
            f"Resuming in the middle of epoch {plan.epoch} (after {plan.batches_done} batches) from a checkpoint "
            "without fulmen's resume record (written by Lightning, or with weights_only): the remaining batches "
            "are skipped at the sampler, but a shuffled epoch's order cannot be rebuilt"
        )
    elif isinstance(loader, DataLoader) and loader.num_workers > 0:
        rank_zero_warn(
            f"Resuming mid-epoch with num_workers={loader.num_workers}: the order of the data is rebuilt exactly, "
            "but random numbers drawn inside worker processes (random augmentation) follow a different stream "
            "than in the interrupted run unless the dataset seeds them per sample",
        )


def sized(limit: Union[int, float]) -> bool:
    return limit != float("inf")

"""Batch iteration: loader length and limits, ``set_epoch``, and a one-batch look-ahead for ``is_last_batch``."""

from __future__ import annotations

import math
import os
import weakref
from collections.abc import Iterator, Mapping
from functools import partial
from typing import Any, Optional, Union

from torch.utils.data import (DataLoader, DistributedSampler, IterableDataset, RandomSampler, Sampler,
                              SequentialSampler)

from fulmen.overrides.distributed import DistributedSamplerWrapper, UnrepeatedDistributedSamplerWrapper
from fulmen.utilities.combined_loader import CombinedLoader
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_warn
from fulmen.utilities.seed import worker_init_function

INF = float("inf")


def loader_length(loader: Any) -> Union[int, float]:
    """len(loader), or inf for iterables without a length (an IterableDataset, a generator)."""
    if isinstance(loader, DataLoader) and isinstance(loader.dataset, IterableDataset):
        try:
            return len(loader)
        except TypeError:
            return INF
    try:
        return len(loader)
    except (TypeError, NotImplementedError):
        return INF


def limited_length(length: Union[int, float], limit: Union[int, float], arg: str) -> Union[int, float]:
    """Apply a ``limit_*_batches`` value (int = batches, float = fraction) to a loader length."""
    if isinstance(limit, int):
        return min(length, limit)
    if limit == 1.0:
        return length
    if length == INF:
        raise MisconfigurationException(
            f"Trainer({arg}={limit}) is a fraction, but the loader has no length; pass an int number of batches"
        )
    n = int(length * limit)
    if n == 0 and limit > 0 and length > 0:
        min_fraction = 1.0 / length
        raise MisconfigurationException(
            f"Trainer({arg}={limit}) of {length} batches is less than one batch; pass at least "
            f"{arg}={min_fraction:.4f} or an int"
        )
    return n


def with_sampler(loader: DataLoader, sampler: Any = None, batch_sampler: Any = None, **changes: Any) -> DataLoader:
    """A copy of ``loader`` that draws indices from ``sampler`` (or batches from ``batch_sampler``), with every other
    setting kept (``changes`` override some)."""
    common = dict(num_workers=loader.num_workers, collate_fn=loader.collate_fn, pin_memory=loader.pin_memory,
                  timeout=loader.timeout, worker_init_fn=loader.worker_init_fn,
                  multiprocessing_context=loader.multiprocessing_context, generator=loader.generator,
                  persistent_workers=loader.persistent_workers)
    if loader.num_workers > 0:
        common["prefetch_factor"] = loader.prefetch_factor
    common.update(changes)
    if batch_sampler is not None:
        return DataLoader(loader.dataset, batch_sampler=batch_sampler, **common)
    return DataLoader(loader.dataset, batch_size=loader.batch_size, drop_last=loader.drop_last, sampler=sampler,
                      **common)


def prepare_loader(loader: Any, global_rank: int, shuffle_off: bool = False,
                   distributed: Optional[dict[str, Any]] = None) -> Any:
    """Give worker seeding to a DataLoader (when ``seed_everything(workers=True)``), turn shuffling off for
    ``overfit_batches``, and give each process its share of the data (``distributed``: the arguments of
    ``distributed_sampler``)."""
    if not isinstance(loader, DataLoader):
        return loader
    map_style = not isinstance(loader.dataset, IterableDataset)
    if shuffle_off and not isinstance(loader.sampler, SequentialSampler) and map_style:
        rank_zero_warn("overfit_batches turns shuffling off: the training loader now reads its data in order")
        loader = with_sampler(loader, SequentialSampler(loader.dataset))
    if distributed is not None and map_style and not isinstance(loader.sampler, DistributedSampler):
        loader = with_sampler(loader, distributed_sampler(loader, **distributed))
    if os.environ.get("PL_SEED_WORKERS") == "1" and loader.worker_init_fn is None and loader.num_workers > 0:
        loader.worker_init_fn = partial(worker_init_function, rank=global_rank)
    return loader


def is_shuffled(loader: Any) -> bool:
    """Whether ``loader`` draws its samples in a random order (a RandomSampler, possibly inside its batch sampler)."""
    if isinstance(getattr(loader, "dataset", None), IterableDataset):
        return False
    batch_sampler = getattr(loader, "batch_sampler", None)
    sampler = getattr(batch_sampler, "sampler", batch_sampler) if batch_sampler is not None else \
        getattr(loader, "sampler", None)
    return isinstance(sampler, RandomSampler)


def distributed_sampler(loader: DataLoader, num_replicas: int, rank: int, train: bool,
                        predicting: bool = False) -> Sampler:
    """This process's share of ``loader``'s samples, as Lightning gives it: for training always shuffled (seeded by
    the global seed, reshuffled by ``set_epoch``) whatever the loader did; for evaluation in the loader's order
    (shuffled only when it was), padded to equal shares by repeating samples, except for predict, which sees each
    sample once. A sampler of the user's own is kept: its indices are what is split."""
    shuffle = train or is_shuffled(loader)
    seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
    kwargs = dict(num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
    if predicting:
        return UnrepeatedDistributedSamplerWrapper(loader.sampler, **kwargs)
    if isinstance(loader.sampler, (RandomSampler, SequentialSampler)):
        return DistributedSampler(loader.dataset, **kwargs)
    return DistributedSamplerWrapper(loader.sampler, **kwargs)


def check_iterable(loader: Any, arg: str) -> None:
    """Raise a TypeError naming ``arg`` when ``loader`` cannot be iterated."""
    if not hasattr(loader, "__iter__"):
        raise TypeError(
            f"{arg} got {type(loader).__name__} {loader!r:.80}, which is not iterable; pass a DataLoader (or any "
            "iterable of batches), a list or dict of them, or a CombinedLoader"
        )


def as_eval_loaders(source: Any, arg: str = "dataloaders") -> tuple[list[Any], bool]:
    """Evaluation data as a flat list of loaders, and whether there are several (then dataloader_idx is passed)."""
    if isinstance(source, CombinedLoader):
        loaders = source.flattened
    elif isinstance(source, Mapping):
        loaders = list(source.values())
    elif isinstance(source, (list, tuple)) and not _is_batch_list(source):
        loaders = list(source)
    else:
        loaders = [source]
    loaders = [dl for dl in loaders if dl is not None]
    for dl in loaders:
        check_iterable(dl, arg)
    return loaders, len(loaders) > 1


def _is_batch_list(source: Any) -> bool:
    # A list of tensors/tuples is one in-memory "loader" of pre-made batches, not a list of loaders.
    return bool(source) and not any(_looks_like_loader(x) for x in source)


def _looks_like_loader(x: Any) -> bool:
    return isinstance(x, (DataLoader, CombinedLoader)) or (
        hasattr(x, "__iter__") and not hasattr(x, "shape") and not isinstance(x, (tuple, dict, list, str, bytes))
    )


def as_train_loader(source: Any) -> Any:
    """Training data as one iterable: several loaders (list or dict) become CombinedLoader("max_size_cycle")."""
    check_iterable(source, "train_dataloaders")
    if isinstance(source, CombinedLoader):
        if source.mode == "sequential":
            raise ValueError('Trainer.fit does not support CombinedLoader(mode="sequential"); use "max_size_cycle", '
                             '"min_size" or "max_size" for training')
        return source
    if isinstance(source, Mapping) or (isinstance(source, (list, tuple)) and source
                                        and all(_looks_like_loader(x) for x in source)):
        for loader in (source.values() if isinstance(source, Mapping) else source):
            check_iterable(loader, "train_dataloaders")
        return CombinedLoader(source, "max_size_cycle")
    return source


def set_epoch(loader: Any, epoch: int) -> None:
    """Tell samplers (DistributedSampler, a seeded shuffle) which epoch starts, so each epoch has its own order."""
    loaders = loader.flattened if isinstance(loader, CombinedLoader) else [loader]
    for dl in loaders:
        for obj in (dl, getattr(dl, "sampler", None), getattr(getattr(dl, "batch_sampler", None), "sampler", None)):
            fn = getattr(obj, "set_epoch", None)
            if callable(fn) and not isinstance(obj, DataLoader):
                fn(epoch)


# The DataLoader iterators with worker processes that runs have started, and the DataLoaders with persistent
# workers that runs used (their workers belong to the DataLoader and live on between runs, until an exception).
_LIVE: "weakref.WeakSet[Any]" = weakref.WeakSet()
_PERSISTENT: "weakref.WeakSet[DataLoader]" = weakref.WeakSet()


def shut_down_workers(persistent: bool = False) -> None:
    """Stop the worker processes (and pin-memory threads) of the loader iterators a run started. After an
    exception its traceback keeps the loop's frames, and with them the iterators and their workers, alive for as
    long as the caller holds the exception; a run's end stops them instead. With ``persistent`` (after an
    exception), the workers of ``persistent_workers=True`` loaders stop too; the loader starts new ones when it is
    next iterated."""
    for it in list(_LIVE):
        it._shutdown_workers()
    _LIVE.clear()
    if persistent:
        for loader in list(_PERSISTENT):
            it = getattr(loader, "_iterator", None)
            if it is not None and hasattr(it, "_shutdown_workers"):
                it._shutdown_workers()
            loader._iterator = None
        _PERSISTENT.clear()


def _note_persistent(loader: Any) -> None:
    for dl in (loader.flattened if isinstance(loader, CombinedLoader) else [loader]):
        if isinstance(dl, DataLoader) and dl.persistent_workers and dl.num_workers > 0:
            _PERSISTENT.add(dl)


def iterate(loader: Any, limit: Union[int, float], it: Optional[Iterator[Any]] = None,
            start: int = 0) -> Iterator[tuple[int, Any, bool]]:
    """Yield ``(batch_idx, batch, is_last)`` for batches ``start`` to ``limit - 1``.

    ``it`` is the loader's iterator when the caller made it (a resumed epoch). With a known length, ``is_last`` comes
    from it, so batch k+1 is read only after batch k ran: a checkpoint taken between them knows exactly what was
    consumed. Without a trustworthy length (none, or an IterableDataset's estimate), one batch is read ahead.
    """
    if start >= limit:
        return
    if it is None:
        it = iter(loader)
    if hasattr(it, "_shutdown_workers") and not getattr(it, "_persistent_workers", False):
        _LIVE.add(it)
    else:
        _note_persistent(loader)
    combined = isinstance(loader, CombinedLoader)
    batch_idx = start
    if limit != INF and not (isinstance(loader, DataLoader) and isinstance(loader.dataset, IterableDataset)):
        for item in it:
            is_last = batch_idx + 1 >= limit
            yield batch_idx, (item[0] if combined else item), is_last
            if is_last:
                return
            batch_idx += 1
        return
    try:
        upcoming = next(it)
    except StopIteration:
        return
    while True:
        batch = upcoming[0] if combined else upcoming
        is_last = batch_idx + 1 >= limit
        if not is_last:
            try:
                upcoming = next(it)
            except StopIteration:
                is_last = True
        yield batch_idx, batch, is_last
        if is_last:
            return
        batch_idx += 1


def num_batches(loader: Any, limit: Union[int, float], arg: str) -> Union[int, float]:
    return limited_length(loader_length(loader), limit, arg)


def ceil_div(a: Union[int, float], b: int) -> Union[int, float]:
    return a if a == INF else math.ceil(a / b)

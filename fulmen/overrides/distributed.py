"""The samplers that split a loader's samples between the processes of a multi-process run, and DDP's backward
preparation for a forward run outside DistributedDataParallel's own ``forward``."""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Any

import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler


class _SamplerIndices(Dataset):
    """The indices a sampler yields, as a dataset of them (read afresh once per epoch), so that DistributedSampler
    can split positions in that list."""

    def __init__(self, sampler: Sampler) -> None:
        self._sampler = sampler
        self._indices: list[Any] = []

    def reset(self) -> None:
        self._indices = list(self._sampler)

    def __getitem__(self, position: int) -> Any:
        return self._indices[position]

    def __len__(self) -> int:
        return len(self._sampler)  # type: ignore[arg-type]


class _OverSampler:
    """Makes a distributed sampler split the indices ``sampler`` yields (taken afresh each epoch) instead of a
    dataset's positions: its "dataset" is the sampler's indices, and it gives back the indices at its positions."""

    dataset: _SamplerIndices

    def __init__(self, sampler: Sampler, **kwargs: Any) -> None:
        self.sampler = sampler
        super().__init__(_SamplerIndices(sampler), **kwargs)  # type: ignore[call-arg]

    def __iter__(self) -> Iterator[Any]:
        self.dataset.reset()
        return (self.dataset[position] for position in super().__iter__())  # type: ignore[misc]


class DistributedSamplerWrapper(_OverSampler, DistributedSampler):
    """Split the indices ``sampler`` yields (in its order, taken afresh each epoch; shuffled again with
    ``shuffle``) between the processes, padded to equal shares as DistributedSampler does."""


class UnrepeatedDistributedSampler(DistributedSampler):
    """Each sample exactly once across the processes (the shares may differ by one sample), as predict needs:
    DistributedSampler pads the shares to equal length by repeating samples, which would repeat predictions."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.dataset, Sized):
            raise TypeError("UnrepeatedDistributedSampler needs a dataset with a length")
        self.num_samples = len(range(self.rank, len(self.dataset), self.num_replicas))
        self.total_size = len(self.dataset)

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(self.epoch)  # (Lightning seeds this shuffle with the epoch alone, not the seed)
            indices = torch.randperm(len(self.dataset), generator=generator).tolist()
        else:
            indices = list(range(len(self.dataset)))
        return iter(indices[self.rank:self.total_size:self.num_replicas])


class UnrepeatedDistributedSamplerWrapper(_OverSampler, UnrepeatedDistributedSampler):
    """UnrepeatedDistributedSampler over the indices ``sampler`` yields."""


def prepare_for_backward(model: torch.nn.parallel.DistributedDataParallel, output: Any) -> None:
    """Tell DDP's reducer that ``output`` came from a forward of ``model``'s module run outside DDP's own forward
    (with ``find_unused_parameters``, the parameters it did not use are marked ready), so that the next backward
    reduces the gradients. Without grad mode, or without gradient sync (``no_sync``), nothing is prepared."""
    if torch.is_grad_enabled() and model.require_backward_grad_sync:
        from torch.nn.parallel.distributed import _find_tensors

        model.require_forward_param_sync = True
        tensors = list(_find_tensors(output)) if model.find_unused_parameters and not model.static_graph else []
        reducer = model.reducer
        reducer._rebuild_buckets()
        reducer.prepare_for_backward(tensors)
    else:
        model.require_forward_param_sync = False

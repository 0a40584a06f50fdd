"""CombinedLoader: iterate several iterables together (train) or one after another (evaluation)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal, Optional

_MODES = ("max_size_cycle", "min_size", "max_size", "sequential")
Mode = Literal["max_size_cycle", "min_size", "max_size", "sequential"]


def _length(iterable: Any) -> Optional[int]:
    try:
        return len(iterable)
    except (TypeError, NotImplementedError):
        return None


class CombinedLoader(Iterable):
    """Combine iterables given as one iterable, a list/tuple, or a dict.

    Iterating yields ``(batch, batch_idx, dataloader_idx)``:

    - ``"max_size_cycle"``: one batch from each iterable per step, shaped like the input collection; shorter ones
      start over until the longest is exhausted. ``dataloader_idx`` is 0.
    - ``"min_size"``: as above, ending with the shortest.
    - ``"max_size"``: as above, ending with the longest; exhausted ones give None.
    - ``"sequential"``: all batches of the first iterable, then the second, ...; ``batch_idx`` restarts for each
      and ``dataloader_idx`` says which one the batch came from.
    """

    def __init__(self, iterables: Any, mode: Mode = "min_size") -> None:
        if mode not in _MODES:
            raise ValueError(f"CombinedLoader(mode={mode!r}) is not supported; choose one of {_MODES}")
        self._iterables = iterables
        self._mode = mode
        self.limits: Optional[list[Optional[int | float]]] = None

    @property
    def iterables(self) -> Any:
        """The iterables as given."""
        return self._iterables

    @property
    def mode(self) -> str:
        """The combination mode."""
        return self._mode

    @property
    def flattened(self) -> list[Any]:
        """The iterables as a flat list (dict values in insertion order)."""
        its = self._iterables
        if isinstance(its, Mapping):
            return list(its.values())
        if isinstance(its, (list, tuple)):
            return list(its)
        return [its]

    @flattened.setter
    def flattened(self, values: list[Any]) -> None:
        its = self._iterables
        if isinstance(its, Mapping):
            self._iterables = type(its)(zip(its.keys(), values))
        elif isinstance(its, (list, tuple)):
            self._iterables = type(its)(values)
        else:
            (self._iterables,) = values

    def _shape(self, items: list[Any]) -> Any:
        its = self._iterables
        if isinstance(its, Mapping):
            return dict(zip(its.keys(), items))
        if isinstance(its, (list, tuple)):
            return type(its)(items)
        return items[0]

    def __len__(self) -> int:
        lengths = [_length(it) for it in self.flattened]
        if self.limits is not None:
            lengths = [min(n, int(lim)) if n is not None and lim is not None and lim != float("inf") else n
                       for n, lim in zip(lengths, self.limits)]
        if any(n is None for n in lengths):
            raise TypeError("CombinedLoader has no length: one of its iterables has no __len__")
        sizes = [int(n) for n in lengths]  # type: ignore[arg-type]
        if not sizes:
            return 0
        if self._mode == "sequential":
            return sum(sizes)
        if self._mode == "min_size":
            return min(sizes)
        return max(sizes)

    def __iter__(self) -> Iterator[tuple[Any, int, int]]:
        if self._mode == "sequential":
            return self._iter_sequential()
        return self._iter_parallel()

    def _iter_sequential(self) -> Iterator[tuple[Any, int, int]]:
        for dl_idx, it in enumerate(self.flattened):
            limit = self.limits[dl_idx] if self.limits is not None else None
            for batch_idx, batch in enumerate(it):
                if limit is not None and batch_idx >= limit:
                    break
                yield batch, batch_idx, dl_idx

    def _iter_parallel(self) -> Iterator[tuple[Any, int, int]]:
        flat = self.flattened
        if not flat:
            return
        iterators: list[Optional[Iterator[Any]]] = [iter(it) for it in flat]
        lengths = [_length(it) for it in flat]
        exhausted = [False] * len(flat)
        batch_idx = 0
        while True:
            items: list[Any] = []
            for i, iterator in enumerate(iterators):
                try:
                    if iterator is None:
                        raise StopIteration
                    items.append(next(iterator))
                except StopIteration:
                    exhausted[i] = True
                    if self._mode == "min_size":
                        return
                    if self._mode == "max_size":
                        iterators[i] = None
                        items.append(None)
                        continue
                    # max_size_cycle: stop once every iterable has been through at least once.
                    if all(exhausted) or lengths[i] == 0:
                        return
                    iterators[i] = iter(flat[i])
                    items.append(next(iterators[i]))  # type: ignore[arg-type]
            if self._mode == "max_size" and all(x is None for x in items):
                return
            if self._mode == "max_size_cycle" and all(exhausted):
                return
            yield self._shape(items), batch_idx, 0
            batch_idx += 1

    def reset(self) -> None:
        """Nothing to reset: each ``iter()`` starts the iterables afresh."""

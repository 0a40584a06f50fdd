"""BasePredictionWriter: write predictions to disk as they come (per batch) or once the predict run ends."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Optional
from typing_extensions import override

from fulmen.callbacks.callback import Callback
from fulmen.utilities.enums import LightningEnum
from fulmen.utilities.exceptions import MisconfigurationException

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer


class WriteInterval(LightningEnum):
    """When a BasePredictionWriter writes: after each batch, at the end of the run, or both."""

    BATCH = "batch"
    EPOCH = "epoch"
    BATCH_AND_EPOCH = "batch_and_epoch"

    @property
    def on_batch(self) -> bool:
        return self in (WriteInterval.BATCH, WriteInterval.BATCH_AND_EPOCH)

    @property
    def on_epoch(self) -> bool:
        return self in (WriteInterval.EPOCH, WriteInterval.BATCH_AND_EPOCH)


class BasePredictionWriter(Callback):
    """Subclass it and implement ``write_on_batch_end`` (``write_interval="batch"``), ``write_on_epoch_end``
    (``"epoch"``) or both (``"batch_and_epoch"``) to save what ``predict_step`` returns, typically with
    ``trainer.predict(model, return_predictions=False)`` so that nothing piles up in memory::

        class Writer(BasePredictionWriter):
            def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices):
                torch.save(predictions, f"predictions_{trainer.global_rank}.pt")
                torch.save(batch_indices, f"indices_{trainer.global_rank}.pt")

    ``batch_indices`` are the dataset indices of each batch (per loader), so that the predictions of several
    processes can be put back in order; they are known for DataLoaders over map-style datasets, else None/empty.
    """

    def __init__(self, write_interval: str = "batch") -> None:
        if write_interval not in [i.value for i in WriteInterval]:
            raise MisconfigurationException(
                f"BasePredictionWriter(write_interval={write_interval!r}) must be one of "
                f"{[i.value for i in WriteInterval]}")
        self.interval = WriteInterval(write_interval)

    def write_on_batch_end(self, trainer: "Trainer", pl_module: Any, prediction: Any,
                           batch_indices: Optional[Sequence[int]], batch: Any, batch_idx: int,
                           dataloader_idx: int) -> None:
        """Write one batch's ``prediction`` (``batch_indices``: its samples' dataset indices)."""
        raise NotImplementedError(f"{type(self).__name__}(write_interval={self.interval.value!r}) must implement "
                                  "write_on_batch_end")

    def write_on_epoch_end(self, trainer: "Trainer", pl_module: Any, predictions: Sequence[Any],
                           batch_indices: Sequence[Any]) -> None:
        """Write all the predictions of the run (a list per loader when there are several, as ``predict``
        returns them) with the dataset indices of each batch."""
        raise NotImplementedError(f"{type(self).__name__}(write_interval={self.interval.value!r}) must implement "
                                  "write_on_epoch_end")

    @override
    def on_predict_batch_end(self, trainer: "Trainer", pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                             dataloader_idx: int = 0) -> None:
        if self.interval.on_batch:
            self.write_on_batch_end(trainer, pl_module, outputs, trainer.predict_loop.current_batch_indices, batch,
                                    batch_idx, dataloader_idx)

    @override
    def on_predict_epoch_end(self, trainer: "Trainer", pl_module: Any) -> None:
        if self.interval.on_epoch:
            loop = trainer.predict_loop
            self.write_on_epoch_end(trainer, pl_module, loop.predictions, loop.epoch_batch_indices)

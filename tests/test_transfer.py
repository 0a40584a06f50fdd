"""Moving batches to the device: nested collections, dataclasses, objects with their own ``.to``, the transfer
hooks; tested by moving to the ``meta`` device, which needs no accelerator (CUDA in tests/test_cuda.py)."""

from __future__ import annotations

import dataclasses
from collections import namedtuple

import torch

import fulmen
from fulmen.demos.boring_classes import BoringModel
from fulmen.utilities import move_data_to_device

Pair = namedtuple("Pair", ["x", "y"])


@dataclasses.dataclass
class Sample:
    image: torch.Tensor
    label: int
    extra: dict


class Encoding:
    """Like a tokenizer's BatchEncoding: holds tensors and moves them with its own .to."""

    def __init__(self, ids: torch.Tensor) -> None:
        self.ids = ids

    def to(self, device):
        self.ids = self.ids.to(device)
        return self


class MovesInPlace(Encoding):
    def to(self, device):
        super().to(device)
        return None


def test_nested_batches_reach_the_device():
    batch = {"pair": Pair(torch.ones(2), [torch.zeros(3), "text"]),
             "sample": Sample(torch.ones(1, 2), 7, {"mask": torch.ones(2, dtype=torch.bool)}),
             "encoding": Encoding(torch.arange(3)), "in_place": MovesInPlace(torch.arange(2)), "n": 5}
    moved = move_data_to_device(batch, "meta")
    assert isinstance(moved["pair"], Pair) and moved["pair"].x.is_meta and moved["pair"].y[0].is_meta
    assert moved["pair"].y[1] == "text" and moved["n"] == 5
    assert isinstance(moved["sample"], Sample) and moved["sample"].image.is_meta and moved["sample"].label == 7
    assert moved["sample"].extra["mask"].is_meta and moved["sample"].extra["mask"].dtype == torch.bool
    assert moved["encoding"].ids.is_meta and moved["in_place"].ids.is_meta
    assert not batch["sample"].image.is_meta  # the input batch is left as it was (dataclasses are copied)


def test_transfer_hooks_run_in_order_on_the_batch_the_step_gets():
    calls = []

    class Hooked(BoringModel):
        def on_before_batch_transfer(self, batch, dataloader_idx):
            calls.append("before")
            return Sample(batch, 0, {})

        def transfer_batch_to_device(self, batch, device, dataloader_idx):
            calls.append(("move", device.type))
            return super().transfer_batch_to_device(batch, device, dataloader_idx)

        def on_after_batch_transfer(self, batch, dataloader_idx):
            calls.append("after")
            return batch.image * 2

        def training_step(self, batch, batch_idx):
            assert isinstance(batch, torch.Tensor)
            return super().training_step(batch, batch_idx)

    fulmen.Trainer(max_steps=1, limit_val_batches=0, logger=False, enable_progress_bar=False,
                   enable_model_summary=False, enable_checkpointing=False).fit(Hooked())
    assert calls == ["before", ("move", "cpu"), "after"]

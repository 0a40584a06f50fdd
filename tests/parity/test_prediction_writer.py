"""BasePredictionWriter on both frameworks: the same calls, with the same predictions and dataset indices, for each
write interval, with a shuffled loader and with two loaders."""

from __future__ import annotations

import pytest
import torch

from tests.parity.recorder import load, quiet_trainer

pytest.importorskip("pytorch_lightning")


def _run(framework, interval, loaders, return_predictions):
    pl, demos = load(framework)
    callbacks = importlib_callbacks(framework)
    calls = []

    class Writer(callbacks.BasePredictionWriter):
        def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx,
                               dataloader_idx):
            calls.append(("batch", prediction.clone(), list(batch_indices), batch_idx, dataloader_idx))

        def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices):
            calls.append(("epoch", predictions, batch_indices))

    class Model(demos.BoringModel):
        def predict_step(self, batch, batch_idx, dataloader_idx=0):
            return self(batch)

    torch.manual_seed(0)
    model = Model()
    data = [torch.utils.data.DataLoader(demos.RandomDataset(32, 10 + i), batch_size=4, shuffle=i == 0)
            for i in range(loaders)]
    trainer = quiet_trainer(pl, callbacks=[Writer(interval)])
    out = trainer.predict(model, data if loaders > 1 else data[0], return_predictions=return_predictions)
    return calls, out


def importlib_callbacks(framework):
    import importlib

    return importlib.import_module("fulmen.callbacks" if framework == "fulmen" else "pytorch_lightning.callbacks")


def same(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("interval", ["batch", "epoch", "batch_and_epoch"])
@pytest.mark.parametrize("loaders", [1, 2])
@pytest.mark.parametrize("return_predictions", [True, False])
def test_prediction_writer_matches(interval, loaders, return_predictions):
    ours, theirs = (_run(f, interval, loaders, return_predictions) for f in ("fulmen", "pytorch_lightning"))
    assert len(ours[0]) == len(theirs[0]) > 0
    assert same(ours[0], theirs[0])
    assert same(ours[1], theirs[1])


def test_write_interval_is_checked():
    from fulmen.callbacks import BasePredictionWriter
    from fulmen.utilities.exceptions import MisconfigurationException

    with pytest.raises(MisconfigurationException, match="write_interval='step'.*'batch', 'epoch'"):
        BasePredictionWriter("step")

"""self.log from many hooks, with every reduction and option: fulmen and pytorch-lightning report the same."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from tests.parity.compare import assert_close_dicts, assert_same_logger_calls
from tests.parity.recorder import load
from tests.parity.test_logger_calls import fit_with_recording_logger

pytest.importorskip("pytorch_lightning")
torchmetrics = pytest.importorskip("torchmetrics")


def build(framework: str, manual: bool):
    pl, demos = load(framework)

    class Logs(demos.BoringModel):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = not manual
            self.val_mean = torchmetrics.MeanMetric()
            self.val_max = torchmetrics.MaxMetric()
            # Data made here, so that it does not depend on how many random numbers each framework draws later
            # (every iter(DataLoader) draws a base seed from the global generator).
            self.train_data = demos.RandomDictDataset(32, 20)
            self.val_data = [demos.RandomDictDataset(32, 7), demos.RandomDictDataset(32, 5)]

        def training_step(self, batch, batch_idx):
            x = batch["a"]
            loss = self.step(x)
            self.log_dict({"d_a": loss, "d_b": loss * 3}, on_epoch=True)
            self.log("sum_idx", float(batch_idx), on_step=False, on_epoch=True, reduce_fx="sum")
            self.log("min_x", x.min(), on_epoch=True, reduce_fx=torch.min)
            self.log("weighted", loss, on_epoch=True, batch_size=batch_idx + 1)
            if manual:
                opt = self.optimizers()
                opt.zero_grad()
                self.manual_backward(loss)
                opt.step()
                return None
            return loss

        def on_train_batch_end(self, outputs, batch, batch_idx):
            self.log("batch_end", float(batch_idx))
            if outputs:  # the loss divided by accumulate_grad_batches, detached
                self.log("out_loss", outputs["loss"], on_epoch=True)

        def on_before_optimizer_step(self, optimizer):
            self.log("grad_norm", self.layer.weight.grad.norm())

        def on_train_epoch_start(self):
            self.log("epoch_start", 1.0 + self.current_epoch)

        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            self.log("v", self.step(batch["a"]))
            self.log(f"v_plain{dataloader_idx}", float(batch_idx), add_dataloader_idx=False, reduce_fx="max")
            self.log("v_step", float(batch_idx), on_step=True)
            if dataloader_idx == 0:
                self.val_mean(batch["a"].mean())  # forward: a batch value and an epoch accumulation
                self.log("tm_mean", self.val_mean, on_step=True, on_epoch=True)
                self.val_max.update(batch["a"].max())  # update only: an epoch value
                self.log("tm_max", self.val_max)

        def on_validation_epoch_end(self):
            self.log("v_end", 3.0, prog_bar=True)

        def train_dataloader(self):
            return DataLoader(self.train_data, batch_size=3)

        def val_dataloader(self):
            return [DataLoader(self.val_data[0], batch_size=2), DataLoader(self.val_data[1], batch_size=3)]

    return pl, Logs


@pytest.mark.parametrize("manual, kwargs", [
    (False, dict(max_epochs=2, log_every_n_steps=2, accumulate_grad_batches=3)),
    (True, dict(max_epochs=2, log_every_n_steps=1, val_check_interval=3)),
])
def test_logging_everywhere(manual, kwargs):
    got = {}
    for framework in ("fulmen", "pytorch_lightning"):
        trainer, _, logger = fit_with_recording_logger(framework, lambda fw: build(fw, manual), **kwargs)
        got[framework] = (logger.calls, {k: float(v) for k, v in trainer.callback_metrics.items()},
                          dict(trainer.progress_bar_metrics))
    (ours, our_cb, our_pb), (theirs, their_cb, their_pb) = got["fulmen"], got["pytorch_lightning"]
    assert_same_logger_calls(ours, theirs)
    assert_close_dicts(our_cb, their_cb)
    assert_close_dicts(our_pb, their_pb)


def test_same_name_from_two_loaders_without_suffix_raises_in_both():
    for framework in ("fulmen", "pytorch_lightning"):
        pl, Model = build(framework, manual=False)

        class Clash(Model):
            def validation_step(self, batch, batch_idx, dataloader_idx=0):
                self.log("clash", 1.0, add_dataloader_idx=False)

        trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False,
                             enable_checkpointing=False, limit_val_batches=2)
        with pytest.raises(Exception, match="twice in `validation_step` with different arguments"):
            trainer.validate(Clash())

"""Logged metrics, callback metrics, results and final weights agree with pytorch-lightning."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader

from tests.parity.compare import assert_close_dicts
from tests.parity.recorder import load, quiet_trainer

pytest.importorskip("pytorch_lightning")


def make_model(framework: str, several_val: bool = False) -> Any:
    pl, demos = load(framework)

    class Logging(demos.BoringModel):
        def training_step(self, batch, batch_idx):
            out = super().training_step(batch, batch_idx)
            self.log("train_loss", out["loss"], prog_bar=True)
            self.log("both", out["loss"] * 2, on_step=True, on_epoch=True, reduce_fx="max")
            self.log("summed", 1.0, on_epoch=True, reduce_fx="sum")
            return out

        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            loss = self.step(batch)
            self.log("val_loss", loss)
            self.log("val_first", batch[0, 0], batch_size=3)
            return {"x": loss}

        def on_validation_epoch_end(self):
            self.log("val_epoch_hook", 7.0)

        def test_step(self, batch, batch_idx):
            self.log("test_loss", self.step(batch))

        def on_train_epoch_end(self):
            self.log("epoch_end_value", float(self.current_epoch))

        def configure_optimizers(self):
            opt = torch.optim.Adam(self.parameters(), lr=0.01)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.StepLR(opt, 1),
                                                        "interval": "epoch"}}

        def val_dataloader(self):
            g = torch.Generator().manual_seed(3)
            loaders = [DataLoader(torch.randn(10, 32, generator=g), batch_size=4) for _ in range(2)]
            return loaders if several_val else loaders[0]

        def train_dataloader(self):
            g = torch.Generator().manual_seed(1)
            return DataLoader(torch.randn(24, 32, generator=g), batch_size=4, shuffle=True, generator=g)

        def test_dataloader(self):
            return DataLoader(torch.randn(9, 32, generator=torch.Generator().manual_seed(5)), batch_size=4)

    return pl, Logging


def run_both(several_val: bool = False, **kwargs: Any) -> dict[str, Any]:
    out = {}
    for framework in ("fulmen", "pytorch_lightning"):
        torch.manual_seed(0)
        pl, Model = make_model(framework, several_val)
        model = Model()
        seen: list[dict[str, float]] = []

        class Spy(pl.Callback):
            def on_train_epoch_end(self, trainer, pl_module):
                seen.append({k: float(v) for k, v in trainer.callback_metrics.items()})

        trainer = quiet_trainer(pl, callbacks=[Spy()], **kwargs)
        trainer.fit(model)
        out[framework] = dict(
            weights={k: v.clone() for k, v in model.state_dict().items()},
            callback={k: float(v) for k, v in trainer.callback_metrics.items()},
            logged={k: float(v) for k, v in trainer.logged_metrics.items()},
            pbar=dict(trainer.progress_bar_metrics),
            seen=seen,
            validate=trainer.validate(model, verbose=False),
            test=trainer.test(model, verbose=False),
            step=trainer.global_step,
            epoch=trainer.current_epoch,
        )
    return out


@pytest.mark.parametrize("kwargs", [
    dict(max_epochs=2, num_sanity_val_steps=2),
    dict(max_epochs=2, accumulate_grad_batches=2, gradient_clip_val=0.3, val_check_interval=0.5),
    dict(max_epochs=1, several_val=True, log_every_n_steps=1),
])
def test_metrics_and_weights_match(kwargs):
    res = run_both(**kwargs)
    ours, theirs = res["fulmen"], res["pytorch_lightning"]
    assert ours["step"] == theirs["step"] and ours["epoch"] == theirs["epoch"]
    for key in theirs["weights"]:
        torch.testing.assert_close(ours["weights"][key], theirs["weights"][key], rtol=1e-5, atol=1e-6)
    assert_close_dicts(ours["callback"], theirs["callback"])
    assert_close_dicts(ours["logged"], theirs["logged"])
    assert_close_dicts(ours["pbar"], theirs["pbar"])
    assert len(ours["seen"]) == len(theirs["seen"])
    for a, b in zip(ours["seen"], theirs["seen"]):
        assert_close_dicts(a, b)
    assert len(ours["validate"]) == len(theirs["validate"])
    for a, b in zip(ours["validate"], theirs["validate"]):
        assert_close_dicts(a, b)
    for a, b in zip(ours["test"], theirs["test"]):
        assert_close_dicts(a, b)

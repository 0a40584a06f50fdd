"""Checkpoints across frameworks: a pytorch-lightning checkpoint resumes in fulmen and a fulmen one in
pytorch-lightning, to the same weights; ModelCheckpoint names and keeps the same files; and the one place where
fulmen differs on purpose: a mid-epoch resume continues with the batches the interrupted epoch had not read."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
import torch
from torch.utils.data import DataLoader

from tests.parity.recorder import load, quiet_trainer

pytest.importorskip("pytorch_lightning")

DATA = torch.randn(32, 32, generator=torch.Generator().manual_seed(3))


def make_module(pl, seen=None):
    class Net(pl.LightningModule):
        def __init__(self, lr: float = 0.1) -> None:
            super().__init__()
            self.save_hyperparameters()
            torch.manual_seed(0)
            self.layer = torch.nn.Linear(32, 2)

        def training_step(self, batch, batch_idx):
            if seen is not None:
                seen.append(int(batch[0, 0].mul(1000).round()))
            return self.layer(batch).pow(2).mean()

        def validation_step(self, batch, batch_idx):
            # A deterministic score with a minimum in the middle of the run, so the top-k has work to do.
            self.log("val_loss", float((self.global_step - 5) ** 2))

        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)
            return [opt], [torch.optim.lr_scheduler.StepLR(opt, 1, 0.5)]

        def train_dataloader(self):
            return DataLoader(DATA, batch_size=4)

        def val_dataloader(self):
            return DataLoader(DATA[:8], batch_size=4)

    return Net


def _fit(framework, max_epochs, ckpt_path=None, seen=None, **kwargs):
    pl, _ = load(framework)
    kwargs.setdefault("limit_train_batches", 4)
    trainer = quiet_trainer(pl, max_epochs=max_epochs, num_sanity_val_steps=0, **kwargs)
    model = make_module(pl, seen)()
    trainer.fit(model, ckpt_path=ckpt_path)
    return trainer, model


@pytest.mark.parametrize("writer, reader", [("pytorch_lightning", "fulmen"), ("fulmen", "pytorch_lightning")])
def test_checkpoint_resumes_in_the_other_framework(writer, reader):
    trainer, _ = _fit(writer, 2)
    trainer.save_checkpoint("written.ckpt")
    written = torch.load("written.ckpt", weights_only=True)  # both write plain data
    assert written["global_step"] == 8 and written["epoch"] == 2
    resumed, model = _fit(reader, 3, ckpt_path="written.ckpt")
    same, _ = _fit(writer, 3, ckpt_path="written.ckpt")
    assert resumed.global_step == same.global_step == 12
    assert resumed.current_epoch == same.current_epoch == 3
    for name, value in same.lightning_module.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value, rtol=0, atol=0)
    assert resumed.optimizers[0].param_groups[0]["lr"] == same.optimizers[0].param_groups[0]["lr"]


@pytest.mark.parametrize("mc_kwargs, fit_kwargs", [
    (dict(monitor="val_loss", save_top_k=2, save_last=True, filename="{epoch}-{step}-{val_loss:.1f}"),
     dict(val_check_interval=0.5)),
    (dict(), {}),
    (dict(save_top_k=-1, every_n_epochs=2), dict(val_check_interval=0.5)),
    (dict(save_top_k=-1, every_n_train_steps=3), {}),
    (dict(monitor="val_loss", mode="max", auto_insert_metric_name=False, filename="{epoch:02d}-{val_loss:.1f}"), {}),
    (dict(save_top_k=0, save_last=True), {}),
    (dict(monitor="val_loss", save_on_train_epoch_end=True), dict(val_check_interval=0.5)),
    (dict(monitor="val_loss", save_top_k=3, save_weights_only=True), {}),
    (dict(filename="fixed", save_top_k=-1), {}),
    (dict(filename="fixed", save_top_k=-1, enable_version_counter=False), {}),
    (dict(save_top_k=2, monitor="val_loss", save_last="link"), {}),
    (dict(save_top_k=-1, train_time_interval=timedelta(0)), {}),
    (dict(monitor="val_loss", every_n_train_steps=2, save_top_k=2), dict(val_check_interval=0.5)),
])
def test_model_checkpoint_keeps_the_same_files(mc_kwargs, fit_kwargs):
    kept = {}
    for framework in ("fulmen", "pytorch_lightning"):
        pl, _ = load(framework)
        folder = os.path.abspath(framework)
        mc = pl.callbacks.ModelCheckpoint(dirpath=folder, **mc_kwargs)
        _fit(framework, 3, callbacks=[mc], enable_checkpointing=True, **fit_kwargs)
        files = sorted(os.listdir(folder))
        links = {name: os.readlink(os.path.join(folder, name)) for name in files
                 if os.path.islink(os.path.join(folder, name))}
        first = torch.load(os.path.join(folder, files[0]), weights_only=True) if files else {}
        kept[framework] = (files, links, os.path.basename(mc.best_model_path),
                           None if mc.best_model_score is None else float(mc.best_model_score),
                           os.path.basename(mc.kth_best_model_path), os.path.basename(mc.last_model_path),
                           sorted(os.path.basename(p) for p in mc.best_k_models), "optimizer_states" in first)
    assert kept["fulmen"] == kept["pytorch_lightning"]


def test_mid_epoch_resume_reads_the_rest_of_the_epoch_where_lightning_restarts_it():
    """8 batches an epoch, a checkpoint after batch 3: fulmen's resumed epoch reads batches 3..7, as the
    uninterrupted run did; Lightning 2.6 restarts the loader at batch 0 and stops after 5 batches (0..4)."""
    order = [int(DATA[i * 4, 0].mul(1000).round()) for i in range(8)]
    after = {}
    for framework in ("fulmen", "pytorch_lightning"):
        pl, _ = load(framework)

        class SaveAt3(pl.Callback):
            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                if batch_idx == 2:
                    trainer.save_checkpoint(f"{framework}-mid.ckpt")

        _fit(framework, 1, limit_val_batches=0, callbacks=[SaveAt3()], limit_train_batches=8)
        seen: list[int] = []
        pl_, _ = load(framework)
        trainer = quiet_trainer(pl_, max_epochs=1, limit_val_batches=0, num_sanity_val_steps=0)
        trainer.fit(make_module(pl_, seen)(), ckpt_path=f"{framework}-mid.ckpt")
        after[framework] = seen
    assert after["fulmen"] == order[3:]
    assert after["pytorch_lightning"] == order[:5]
    # Lightning's mid-epoch file in fulmen: the progress counters place it after batch 3 too (an unshuffled loader,
    # so the order needs no random state).
    seen = []
    trainer = quiet_trainer(load("fulmen")[0], max_epochs=1, limit_val_batches=0, num_sanity_val_steps=0)
    with pytest.warns(UserWarning, match="without fulmen's resume record"):
        trainer.fit(make_module(load("fulmen")[0], seen)(), ckpt_path="pytorch_lightning-mid.ckpt")
    assert seen == order[3:] and trainer.global_step == 8

"""``trainer.fit_loop``, ``validate_loop``, ``test_loop`` and ``predict_loop``: every counter Lightning's users read,
in every callback hook of a run, the same on fulmen and on pytorch-lightning (fit with mid-epoch validation and two
validation loaders, accumulation, step and epoch schedulers, manual optimization, a resumed fit, then validate, test
and predict)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.utils.data import DataLoader

from tests.parity.recorder import load

pytest.importorskip("pytorch_lightning")

HOOKS = ("on_fit_start", "on_sanity_check_start", "on_sanity_check_end", "on_train_start", "on_train_epoch_start",
         "on_train_batch_start", "on_before_zero_grad", "on_before_backward", "on_after_backward",
         "on_before_optimizer_step", "on_train_batch_end", "on_train_epoch_end", "on_validation_start",
         "on_validation_epoch_start", "on_validation_batch_start", "on_validation_batch_end",
         "on_validation_epoch_end", "on_validation_end", "on_train_end", "on_fit_end", "on_test_start",
         "on_test_batch_start", "on_test_batch_end", "on_test_end", "on_predict_start", "on_predict_batch_start",
         "on_predict_batch_end", "on_predict_end", "on_save_checkpoint")


def _counts(progress, names=("ready", "started", "processed", "completed")):
    return {part: [getattr(getattr(progress, part), n) for n in names if hasattr(getattr(progress, part), n)]
            for part in ("total", "current")}


def snapshot(trainer):
    fit = trainer.fit_loop
    epoch = fit.epoch_loop
    auto = epoch.automatic_optimization.optim_progress
    return {
        "epoch_progress": _counts(fit.epoch_progress), "max_epochs": fit.max_epochs, "min_epochs": fit.min_epochs,
        "max_steps": fit.max_steps, "min_steps": fit.min_steps, "total_batch_idx": fit.total_batch_idx,
        "batch_idx": fit.batch_idx, "batch_progress": _counts(epoch.batch_progress),
        "is_last_batch": epoch.batch_progress.is_last_batch, "scheduler_progress": _counts(epoch.scheduler_progress),
        "step": _counts(auto.optimizer.step), "zero_grad": _counts(auto.optimizer.zero_grad),
        "optimizer_steps": auto.optimizer_steps,
        "manual_steps": _counts(epoch.manual_optimization.optim_step_progress),
        "batches_that_stepped": epoch._batches_that_stepped, "global_step": epoch.global_step,
        "epoch_total_batch_idx": epoch.total_batch_idx, "epoch_batch_idx": epoch.batch_idx,
        "val_loop": _counts(epoch.val_loop.batch_progress), "val_is_last": epoch.val_loop.batch_progress.is_last_batch,
        "validate_loop": _counts(trainer.validate_loop.batch_progress),
        "test_loop": _counts(trainer.test_loop.batch_progress),
        "predict_loop": _counts(trainer.predict_loop.batch_progress),
        "val_defined": epoch.val_loop._data_source.is_defined(),
        "validate_defined": trainer.validate_loop._data_source.is_defined(),
    }


def run(framework, manual=False, accumulate=2, resume_from=None, tmp_path=None, max_epochs=2):
    pl, demos = load(framework)
    records = []

    def recorder(name):
        def hook(self, trainer, *args, **kwargs):
            records.append((name, snapshot(trainer)))
        return hook

    Probe = type("Probe", (pl.Callback,), {name: recorder(name) for name in HOOKS})

    class Model(demos.BoringModel):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = not manual
            torch.manual_seed(1)
            self.data = [demos.RandomDataset(32, 28), demos.RandomDataset(32, 6), demos.RandomDataset(32, 4)]

        def training_step(self, batch, batch_idx):
            if not manual:
                return super().training_step(batch, batch_idx)
            opt = self.optimizers()
            loss = self.step(batch)
            opt.zero_grad()
            self.manual_backward(loss)
            if batch_idx % 2 == 1:
                opt.step()
            return loss

        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            self.log("val_loss", self.step(batch))

        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.1)
            step = torch.optim.lr_scheduler.StepLR(opt, 1)
            return [opt], [{"scheduler": step, "interval": "step", "frequency": 2}]

        def train_dataloader(self):
            return DataLoader(self.data[0], batch_size=4)

        def val_dataloader(self):
            return [DataLoader(self.data[1], batch_size=2), DataLoader(self.data[2], batch_size=2)]

        def test_dataloader(self):
            return DataLoader(self.data[1], batch_size=3)

        def predict_dataloader(self):
            return DataLoader(self.data[2], batch_size=3)

    callbacks = [Probe()]
    if tmp_path is not None:  # the checkpoint a resumed fit starts from: the end of the first epoch
        checkpoint_cls = __import__("fulmen.callbacks" if framework == "fulmen" else "pytorch_lightning.callbacks",
                                    fromlist=["ModelCheckpoint"]).ModelCheckpoint
        callbacks.append(checkpoint_cls(dirpath=tmp_path / framework, save_top_k=-1, save_on_train_epoch_end=True))
    pl.seed_everything(0, verbose=False)
    model = Model()
    trainer = pl.Trainer(max_epochs=max_epochs, val_check_interval=0.5, num_sanity_val_steps=1,
                         accumulate_grad_batches=1 if manual else accumulate, callbacks=callbacks, logger=False,
                         enable_checkpointing=tmp_path is not None, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, ckpt_path=resume_from)
        if tmp_path is not None and resume_from is None:
            return records, callbacks[1].best_model_path or sorted((tmp_path / framework).iterdir())[-1]
        trainer.validate(model, verbose=False)
        trainer.validate(model, verbose=False)
        trainer.test(model, verbose=False)
        trainer.predict(model)
    return records


def assert_same(ours, theirs):
    assert [name for name, _ in ours] == [name for name, _ in theirs]
    for index, ((name, a), (_, b)) in enumerate(zip(ours, theirs)):
        for key in b:
            assert a[key] == b[key], f"record {index} ({name}): {key} is {a[key]}, Lightning's is {b[key]}"


@pytest.mark.parametrize("manual, accumulate", [(False, 2), (False, 3), (True, 1)],
                         ids=["automatic-accumulate-2", "automatic-accumulate-3", "manual"])
def test_loop_counters_in_every_hook(manual, accumulate):
    assert_same(run("fulmen", manual, accumulate), run("lightning", manual, accumulate))


@pytest.mark.parametrize("manual", [False, True], ids=["automatic", "manual"])
def test_loop_counters_after_resuming(manual, tmp_path):
    ours_before, our_path = run("fulmen", manual, tmp_path=tmp_path, max_epochs=1)
    theirs_before, their_path = run("lightning", manual, tmp_path=tmp_path, max_epochs=1)
    assert_same(ours_before, theirs_before)
    # Each framework resumes from its own checkpoint, taken at the end of epoch 0. (From the middle of an epoch
    # the two differ on purpose: fulmen finishes the epoch exactly, Lightning restarts its data.)
    assert_same(run("fulmen", manual, resume_from=our_path, tmp_path=tmp_path / "again"),
                run("lightning", manual, resume_from=their_path, tmp_path=tmp_path / "again"))


def test_loop_limits_can_be_set_through_the_loop():
    def run_twice(framework):
        pl, demos = load(framework)
        trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, limit_train_batches=2, limit_val_batches=0)
        model = demos.BoringModel()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.fit(model)
            # A pattern of Lightning's users: extend the fit through the loop object, then fit again.
            trainer.fit_loop.max_epochs = 3
            trainer.fit_loop.epoch_loop.max_steps = 5
            limits = (trainer.max_epochs, trainer.max_steps)
            trainer.fit(model)
        return limits, trainer.global_step, trainer.current_epoch, _counts(trainer.fit_loop.epoch_progress)

    ours = run_twice("fulmen")
    assert ours == run_twice("lightning")
    assert ours[0] == (3, 5)

"""Hook order: the same scenario on fulmen and on pytorch-lightning records the same sequence of calls."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tests.parity.recorder import hooked_classes, quiet_trainer

pytest.importorskip("pytorch_lightning")

FRAMEWORKS = ("fulmen", "pytorch_lightning")


def record(framework: str, run: Any, base_model: str = "BoringModel", record_module: bool = True,
           model_kwargs: Any = None, **trainer_kwargs: Any) -> list[Any]:
    torch.manual_seed(0)
    pl, Model, HookedCallback, calls = hooked_classes(framework, base_model, record_module)
    model = Model(**(model_kwargs or {}))
    trainer = quiet_trainer(pl, callbacks=[HookedCallback()], **trainer_kwargs)
    run(trainer, model)
    return calls


def assert_same(run: Any, **kwargs: Any) -> list[Any]:
    ours = record("fulmen", run, **kwargs)
    theirs = record("pytorch_lightning", run, **kwargs)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert a == b, f"call {i} differs: fulmen {a} vs lightning {b}\ncontext (lightning): {theirs[max(0, i-4):i+3]}"
    assert len(ours) == len(theirs), f"fulmen made {len(ours)} calls, lightning {len(theirs)}: {ours[len(theirs):] or theirs[len(ours):]}"
    return ours


def fit(trainer: Any, model: Any) -> None:
    trainer.fit(model)


def test_fit_with_sanity_check():
    calls = assert_same(fit, max_epochs=1, limit_train_batches=2, limit_val_batches=2)
    names = [c[0] for c in calls]
    assert names.index("Callback.on_sanity_check_start") < names.index("val_dataloader")


def test_fit_two_epochs_val_check_interval():
    assert_same(fit, max_epochs=2, limit_train_batches=4, limit_val_batches=1, val_check_interval=0.5)


def test_accumulation_with_clipping():
    assert_same(fit, max_epochs=1, limit_train_batches=5, limit_val_batches=0, accumulate_grad_batches=2,
                gradient_clip_val=0.5)


def test_manual_optimization():
    assert_same(fit, base_model="ManualOptimBoringModel", max_epochs=1, limit_train_batches=2, limit_val_batches=1)


def test_default_module_callback_order():
    """The flat default path (no module hook overridden) shows callbacks the same order."""
    assert_same(fit, record_module=False, max_epochs=1, limit_train_batches=3, limit_val_batches=2,
                accumulate_grad_batches=2)


def test_max_steps_mid_epoch_and_check_val_none():
    assert_same(fit, max_steps=5, limit_train_batches=3, limit_val_batches=1, val_check_interval=2,
                check_val_every_n_epoch=None, max_epochs=-1)


@pytest.mark.parametrize("verb", ["validate", "test", "predict"])
def test_eval_and_predict(verb):
    assert_same(lambda t, m: getattr(t, verb)(m), limit_val_batches=2, limit_test_batches=2,
                limit_predict_batches=2)


def test_validate_zero_batches():
    assert_same(lambda t, m: t.validate(m), limit_val_batches=0)


def test_several_eval_loaders():
    def run(trainer, model):
        from torch.utils.data import DataLoader

        loaders = [DataLoader(torch.randn(4, 32), batch_size=2), DataLoader(torch.randn(6, 32), batch_size=2)]
        trainer.validate(model, dataloaders=loaders)

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        return {"x": self.step(batch)}

    ours = _record_with(run, validation_step, "fulmen")
    theirs = _record_with(run, validation_step, "pytorch_lightning")
    assert ours == theirs
    assert ("Callback.on_validation_batch_start", ("Tensor", 0, 1), ()) in ours


def _record_with(run, validation_step, framework):
    torch.manual_seed(0)
    pl, Model, HookedCallback, calls = hooked_classes(framework)
    Model.validation_step = validation_step
    trainer = quiet_trainer(pl, callbacks=[HookedCallback()])
    run(trainer, Model())
    return [c for c in calls if c[0] != "validation_step"]


@pytest.mark.parametrize("verb", ["fit", "validate", "test", "predict"])
def test_datamodule_hook_order(verb):
    """Datamodule hooks run before the callbacks' and the module's: prepare_data, setup, loaders, teardown."""
    from tests.parity.recorder import _recording, load

    def record_dm(framework):
        pl, demos = load(framework)
        calls = []
        body = {"_calls": calls}
        for name in ("prepare_data", "setup", "teardown", "train_dataloader", "val_dataloader", "test_dataloader",
                     "predict_dataloader", "state_dict"):
            body[name] = _recording(name, "DM.", 0)
        DM = type("HookedDM", (demos.BoringDataModule,), body)
        torch.manual_seed(0)
        trainer = quiet_trainer(pl, max_epochs=1, limit_train_batches=2, limit_val_batches=2, limit_test_batches=2,
                                limit_predict_batches=2)
        getattr(trainer, verb)(demos.BoringModel(), datamodule=DM())
        return calls

    ours, theirs = record_dm("fulmen"), record_dm("pytorch_lightning")
    # Lightning's DM.state_dict call comes from its checkpoint callback/dump; fulmen saves no checkpoint yet.
    theirs = [c for c in theirs if c[0] != "DM.state_dict"]
    assert ours == theirs


def test_fractional_val_check_with_odd_batches():
    assert_same(fit, max_epochs=2, limit_train_batches=5, limit_val_batches=1, val_check_interval=0.5)


def test_iterable_train_data_with_validation():
    def run(trainer, model):
        from torch.utils.data import DataLoader

        from tests.parity.recorder import load

        _, demos = load("fulmen" if type(trainer).__module__.startswith("fulmen") else "pytorch_lightning")
        trainer.fit(model, train_dataloaders=DataLoader(demos.RandomIterableDataset(32, 7)))

    assert_same(run, max_epochs=2, limit_val_batches=1, record_module=False)
    assert_same(run, max_epochs=2, limit_train_batches=3, limit_val_batches=1, record_module=False)


@pytest.mark.parametrize("kwargs", [
    dict(max_epochs=3, limit_train_batches=2, limit_val_batches=1, check_val_every_n_epoch=2),
    dict(max_epochs=1, limit_train_batches=2, limit_val_batches=3, num_sanity_val_steps=-1),
    dict(max_epochs=2, limit_train_batches=2, limit_val_batches=1, reload_dataloaders_every_n_epochs=1),
    dict(max_epochs=1, limit_train_batches=0, limit_val_batches=1),
    dict(max_epochs=0, limit_val_batches=1),
    dict(fast_dev_run=2),
    dict(max_epochs=2, overfit_batches=2),
    dict(max_epochs=2, min_epochs=1, limit_train_batches=3, limit_val_batches=1, max_steps=4),
    dict(max_epochs=1, limit_train_batches=3, limit_val_batches=0.5),
], ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_trainer_options(kwargs):
    assert_same(fit, **kwargs)


def test_on_train_batch_start_minus_one():
    def on_train_batch_start(self, batch, batch_idx):
        self._calls.append(("on_train_batch_start", ("Tensor", batch_idx), ()))
        return -1 if batch_idx == 1 else None

    def run_with(framework):
        torch.manual_seed(0)
        pl, Model, HookedCallback, calls = hooked_classes(framework)
        Model.on_train_batch_start = on_train_batch_start
        trainer = quiet_trainer(pl, callbacks=[HookedCallback()], max_epochs=2, limit_train_batches=4,
                                limit_val_batches=1)
        trainer.fit(Model())
        return calls, trainer.global_step

    assert run_with("fulmen") == run_with("pytorch_lightning")


def test_should_stop_from_a_callback_mid_epoch():
    def run_with(framework):
        torch.manual_seed(0)
        pl, Model, HookedCallback, calls = hooked_classes(framework)

        class Stop(pl.Callback):
            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                if trainer.global_step == 3:
                    trainer.should_stop = True

        trainer = quiet_trainer(pl, callbacks=[HookedCallback(), Stop()], max_epochs=3, min_epochs=2,
                                limit_train_batches=4, limit_val_batches=1, val_check_interval=2)
        trainer.fit(Model())
        return calls, trainer.global_step, trainer.current_epoch

    assert run_with("fulmen") == run_with("pytorch_lightning")


@pytest.mark.parametrize("where", ["on_train_batch_end", "validation_step", "on_fit_start"])
def test_exception_path(where):
    def run_with(framework):
        torch.manual_seed(0)
        pl, Model, HookedCallback, calls = hooked_classes(framework)

        def boom(self, *args, **kwargs):
            raise ValueError("boom")

        setattr(Model, where, boom)
        trainer = quiet_trainer(pl, callbacks=[HookedCallback()], max_epochs=1, limit_train_batches=2,
                                limit_val_batches=1)
        with pytest.raises(ValueError, match="boom"):
            trainer.fit(Model())
        return [c for c in calls if c[0] != "Callback.on_exception"] + [
            (c[0], ("ValueError",)) for c in calls if c[0] == "Callback.on_exception"], trainer.state.status.value

    assert run_with("fulmen") == run_with("pytorch_lightning")


def test_no_optimizer():
    def run_with(framework):
        torch.manual_seed(0)
        pl, Model, HookedCallback, calls = hooked_classes(framework, record_module=False)

        class NoOpt(Model):
            def configure_optimizers(self):
                return None

        trainer = quiet_trainer(pl, callbacks=[HookedCallback()], max_epochs=1, limit_train_batches=3,
                                limit_val_batches=0)
        model = NoOpt()
        before = model.layer.weight.detach().clone()
        trainer.fit(model)
        return calls, trainer.global_step, torch.equal(before, model.layer.weight)

    assert run_with("fulmen") == run_with("pytorch_lightning")

"""Every misuse raises a clear error naming the argument or hook, the value, and the fix."""

import pytest
import torch
from torch.utils.data import DataLoader

import fulmen
from fulmen.callbacks import Callback
from fulmen.demos.boring_classes import BoringModel, RandomDataset
from fulmen.utilities.exceptions import MisconfigurationException


@pytest.mark.parametrize("kwargs, match", [
    (dict(precision="17"), r"precision='17'\) is not supported; choose one of '64-true'"),
    (dict(max_epochs=-2), r"max_epochs=-2"),
    (dict(max_epochs=True), r"max_epochs=True"),
    (dict(max_steps=-5), r"max_steps=-5"),
    (dict(limit_train_batches=1.5), r"limit_train_batches=1.5"),
    (dict(limit_val_batches=-1), r"limit_val_batches=-1"),
    (dict(val_check_interval=0.0), r"val_check_interval=0.0"),
    (dict(val_check_interval=1.5), r"val_check_interval=1.5"),
    (dict(accumulate_grad_batches=0), r"accumulate_grad_batches=0"),
    (dict(gradient_clip_algorithm="l2"), r"gradient_clip_algorithm='l2'.*'norm' or 'value'"),
    (dict(accelerator="quantum"), r"accelerator='quantum'"),
    (dict(devices="x"), r"devices='x'"),
    (dict(log_every_n_steps=-1), r"log_every_n_steps=-1"),
    (dict(num_sanity_val_steps=-2), r"num_sanity_val_steps=-2"),
    (dict(fast_dev_run=-1), r"fast_dev_run=-1"),
    (dict(max_time="soon"), r"max_time='soon'"),
    (dict(deterministic="yes"), r"deterministic='yes'"),
    (dict(check_val_every_n_epoch=0), r"check_val_every_n_epoch=0"),
    (dict(strategy="bogus"), r"strategy='bogus'"),
    (dict(profiler="fancy"), r"profiler='fancy'"),
    (dict(barebones=True, enable_progress_bar=True), r"barebones=True.*enable_progress_bar"),
])
def test_bad_trainer_argument_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fulmen.Trainer(**kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(gradient_clip_val="1"), r"gradient_clip_val='1'"),
    (dict(inference_mode="no"), r"inference_mode='no'"),
    (dict(callbacks=[object()]), r"not a fulmen Callback"),
    (dict(limit_train_batches="all"), r"limit_train_batches='all'"),
])
def test_bad_trainer_argument_type(kwargs, match):
    with pytest.raises(TypeError, match=match):
        fulmen.Trainer(**kwargs)


def test_positional_arguments_are_refused():
    with pytest.raises(TypeError, match="keyword-only"):
        fulmen.Trainer(5)


def test_cuda_request_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(MisconfigurationException, match="accelerator='cuda'"):
        fulmen.Trainer(accelerator="cuda")


def trainer(**kwargs):
    return fulmen.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=2, enable_model_summary=False,
                          **kwargs)


def test_no_training_step():
    class NoStep(fulmen.LightningModule):
        def configure_optimizers(self):
            return None

    with pytest.raises(MisconfigurationException, match="no training_step"):
        trainer().fit(NoStep(), DataLoader(RandomDataset(32, 4)))


def test_no_configure_optimizers():
    class NoOpt(fulmen.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(32, 2)

        def training_step(self, batch, batch_idx):
            return self.layer(batch).sum()

    with pytest.raises(MisconfigurationException, match="no configure_optimizers"):
        trainer().fit(NoOpt(), DataLoader(RandomDataset(32, 4)))


def test_no_train_loader():
    class NoData(BoringModel):
        train_dataloader = fulmen.LightningModule.train_dataloader

    with pytest.raises(MisconfigurationException, match="No training data"):
        trainer().fit(NoData())


def test_empty_train_loader():
    with pytest.raises(MisconfigurationException, match="training loader is empty"):
        trainer().fit(BoringModel(), DataLoader(RandomDataset(32, 0)))


@pytest.mark.parametrize("output, match", [
    ("a string", r"training_step must return a loss Tensor.*returned str"),
    ({"los": 1}, r"without a 'loss' key \(keys: \['los'\]\)"),
])
def test_training_step_wrong_return(output, match):
    class Wrong(BoringModel):
        def training_step(self, batch, batch_idx):
            return output

    with pytest.raises(MisconfigurationException, match=match):
        trainer().fit(Wrong())


@pytest.mark.parametrize("value, match", [
    ("text", r"self.log\('bad', value\) in `training_step` got a str"),
    (torch.ones(3), r"tensor of shape \(3,\); log a scalar"),
])
def test_logging_bad_values(value, match):
    class Logs(BoringModel):
        def training_step(self, batch, batch_idx):
            self.log("bad", value)
            return super().training_step(batch, batch_idx)

    with pytest.raises(ValueError, match=match):
        trainer().fit(Logs())


@pytest.mark.parametrize("hook", ["on_train_end", "setup", "configure_optimizers", "on_fit_start"])
def test_logging_where_not_allowed(hook):
    def body(self, *args, **kwargs):
        self.log("x", 1.0)
        return getattr(BoringModel, hook)(self, *args, **kwargs)

    Model = type("Model", (BoringModel,), {hook: body})
    with pytest.raises(MisconfigurationException, match=rf"can't self.log\(\) inside `{hook}`"):
        trainer().fit(Model())


def test_logging_in_predict_step():
    class Predicts(BoringModel):
        def predict_step(self, batch, batch_idx):
            self.log("p", 1.0)

    with pytest.raises(MisconfigurationException, match="predict"):
        trainer().predict(Predicts())


def test_logging_epoch_only_hook_with_on_step():
    class Logs(BoringModel):
        def on_train_epoch_end(self):
            self.log("x", 1.0, on_step=True)

    with pytest.raises(MisconfigurationException, match=r"on_step=True.*not allowed in `on_train_epoch_end`"):
        trainer().fit(Logs())


def test_two_optimizers_under_automatic_optimization():
    class Two(BoringModel):
        def configure_optimizers(self):
            return [torch.optim.SGD(self.parameters(), lr=0.1), torch.optim.SGD(self.parameters(), lr=0.1)]

    with pytest.raises(MisconfigurationException, match="several optimizers needs manual optimization"):
        trainer().fit(Two())


def test_scheduler_interval():
    class BadInterval(BoringModel):
        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.1)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.StepLR(opt, 1),
                                                        "interval": "batch"}}

    with pytest.raises(MisconfigurationException, match=r'"interval": \'batch\'; it must be "step" or "epoch"'):
        trainer().fit(BadInterval())


def test_plateau_without_monitor():
    class Plateau(BoringModel):
        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.1)
            return [opt], [torch.optim.lr_scheduler.ReduceLROnPlateau(opt)]

    with pytest.raises(MisconfigurationException, match="ReduceLROnPlateau scheduler needs a metric to monitor"):
        trainer().fit(Plateau())


def test_validate_without_validation_step():
    class NoVal(BoringModel):
        validation_step = fulmen.LightningModule.validation_step

    with pytest.raises(MisconfigurationException, match="Trainer.validate needs NoVal.validation_step"):
        trainer().validate(NoVal())


def test_manual_optimization_with_trainer_clipping():
    from fulmen.demos.boring_classes import ManualOptimBoringModel

    with pytest.raises(MisconfigurationException, match=r"gradient_clip_val=0.5\) does not apply under manual"):
        trainer(gradient_clip_val=0.5).fit(ManualOptimBoringModel())
    with pytest.raises(MisconfigurationException, match=r"accumulate_grad_batches=2\) does not apply"):
        trainer(accumulate_grad_batches=2).fit(ManualOptimBoringModel())


def test_removed_epoch_end_hook():
    class Old(BoringModel):
        def training_epoch_end(self, outputs):
            pass

    with pytest.raises(NotImplementedError, match="on_train_epoch_end"):
        trainer().fit(Old())


def test_dataloaders_and_datamodule_together():
    from fulmen.demos.boring_classes import BoringDataModule

    with pytest.raises(MisconfigurationException, match="both dataloaders and a datamodule"):
        trainer().fit(BoringModel(), DataLoader(RandomDataset(32, 4)), datamodule=BoringDataModule())


def test_not_a_lightning_module():
    with pytest.raises(TypeError, match="expects a fulmen LightningModule, got Linear"):
        trainer().fit(torch.nn.Linear(2, 2))


def test_several_val_loaders_without_dataloader_idx():
    class NoIdx(BoringModel):
        def val_dataloader(self):
            return [DataLoader(RandomDataset(32, 4)), DataLoader(RandomDataset(32, 4))]

    with pytest.raises(MisconfigurationException, match="has no dataloader_idx argument"):
        trainer().fit(NoIdx())


def test_val_check_interval_beyond_epoch():
    with pytest.raises(ValueError, match=r"val_check_interval=10\) is more than the 2 training batches"):
        trainer(val_check_interval=10).fit(BoringModel())


def test_callback_exception_reaches_on_exception_and_is_reraised():
    seen = []

    class Boom(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            raise RuntimeError("boom")

        def on_exception(self, trainer, pl_module, exception):
            seen.append(str(exception))

    t = trainer(callbacks=[Boom()])
    with pytest.raises(RuntimeError, match="boom"):
        t.fit(BoringModel())
    assert seen == ["boom"]
    assert t.interrupted


@pytest.mark.parametrize("call, match", [
    (lambda t: t.fit(BoringModel(), 5), r"train_dataloaders got int 5, which is not iterable"),
    (lambda t: t.fit(BoringModel(), val_dataloaders=5), r"val_dataloaders got int 5, which is not iterable"),
    (lambda t: t.validate(BoringModel(), dataloaders=3.5), r"dataloaders got float 3.5, which is not iterable"),
])
def test_loaders_that_are_not_iterable(call, match):
    with pytest.raises(TypeError, match=match):
        call(trainer())


def test_logger_that_is_not_a_logger():
    with pytest.raises(TypeError, match=r"Trainer\(logger=...\) got 'csv'"):
        fulmen.Trainer(logger="csv")


def test_training_data_without_length_that_yields_nothing():
    with pytest.raises(MisconfigurationException, match="training data produced no batches"):
        trainer().fit(BoringModel(), iter([]))


def test_spent_generator_warns_in_later_epochs():
    gen = (torch.randn(2, 32) for _ in range(3))
    t = fulmen.Trainer(max_epochs=3, limit_val_batches=0, enable_model_summary=False)
    with pytest.warns(UserWarning, match="a generator can be iterated only once"):
        t.fit(BoringModel(), gen)
    assert t.global_step == 3 and t.current_epoch == 3


def test_a_log_or_checkpoint_folder_that_cannot_be_created(tmp_path):
    """Running as root, a read-only folder would still be writable; a path through a file fails for everyone."""
    (tmp_path / "afile").write_text("")
    with pytest.raises(NotADirectoryError, match=r"Cannot create the folder .*afile/sub/lightning_logs.* "
                                                 r"save_dir you can write to .*default_root_dir"):
        fulmen.Trainer(default_root_dir=tmp_path / "afile" / "sub", max_steps=1, enable_progress_bar=False,
                       enable_model_summary=False).fit(BoringModel())
    from fulmen.callbacks import ModelCheckpoint

    with pytest.raises(NotADirectoryError, match=r"afile/ck.*ModelCheckpoint\(dirpath=...\)"):
        fulmen.Trainer(logger=False, max_steps=1, enable_progress_bar=False, enable_model_summary=False,
                       callbacks=[ModelCheckpoint(dirpath=tmp_path / "afile" / "ck")]).fit(BoringModel())

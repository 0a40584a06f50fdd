"""LightningModule and LightningDataModule utilities."""

import copy
import logging
import pickle

import pytest
import torch
from torch.utils.data import DataLoader

import fulmen
from fulmen.callbacks import Callback, ModelSummary
from fulmen.demos.boring_classes import BoringModel, RandomDataset


def test_all_gather_on_one_process_returns_the_data():
    model = BoringModel()
    t = torch.arange(3.0)
    out = model.all_gather({"a": t, "b": 2})
    assert out["a"] is t and torch.equal(out["b"], torch.tensor(2))


def test_freeze_unfreeze_print_device_dtype(capsys):
    model = BoringModel()
    model.freeze()
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    model.unfreeze()
    assert model.training and all(p.requires_grad for p in model.parameters())
    model.print("hello")
    assert capsys.readouterr().out == "hello\n"
    assert model.device == torch.device("cpu") and model.dtype == torch.float32
    assert model.current_epoch == 0 and model.global_step == 0
    with pytest.raises(RuntimeError, match="not attached to a `Trainer`"):
        model.trainer


def test_a_copy_or_pickle_of_an_attached_module_leaves_the_trainer_behind():
    copies = []

    class Copy(Callback):
        def on_train_start(self, trainer, pl_module):
            copies.append(copy.deepcopy(pl_module))
            copies.append(pickle.loads(pickle.dumps(pl_module)))

    model = BoringModel()
    trainer = fulmen.Trainer(max_steps=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                             enable_checkpointing=False, callbacks=[Copy()])
    trainer.fit(model)
    assert model.trainer is trainer
    for clone in copies:
        assert clone._trainer is None
        assert clone.state_dict().keys() == model.state_dict().keys()


def test_configure_callbacks_replace_trainer_callbacks_of_the_same_type():
    class Marker(Callback):
        def __init__(self, tag):
            self.tag = tag

    seen = []

    class WithCallbacks(BoringModel):
        def configure_callbacks(self):
            return [Marker("module")]

        def on_train_start(self):
            seen.extend(cb.tag for cb in self.trainer.callbacks if isinstance(cb, Marker))

    trainer = fulmen.Trainer(max_steps=1, limit_val_batches=0, enable_model_summary=False,
                             callbacks=[Marker("trainer")])
    trainer.fit(WithCallbacks())
    assert seen == ["module"]
    assert [cb.tag for cb in trainer.callbacks if isinstance(cb, Marker)] == ["trainer"]  # restored after the run


def test_lr_schedulers_under_manual_optimization():
    class Manual(BoringModel):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            opt = self.optimizers()
            opt.zero_grad()
            self.manual_backward(self.step(batch))
            opt.step()
            if self.trainer.is_last_batch:
                self.lr_schedulers().step()

    trainer = fulmen.Trainer(max_epochs=2, limit_train_batches=3, limit_val_batches=0, enable_model_summary=False)
    trainer.fit(Manual())
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.1 * 0.1 ** 2)


def test_datamodule_from_datasets_and_hparams():
    class DM(fulmen.LightningDataModule):
        def __init__(self, batch_size=4):
            super().__init__()
            self.save_hyperparameters()

    dm = DM.from_datasets(RandomDataset(32, 8), RandomDataset(32, 4), batch_size=4)
    assert len(dm.train_dataloader()) == 2 and len(dm.val_dataloader()) == 1
    assert DM(batch_size=8).hparams.batch_size == 8
    trainer = fulmen.Trainer(max_epochs=1, enable_model_summary=False)
    trainer.fit(BoringModel(), datamodule=dm)
    assert trainer.global_step == 2


def test_model_summary_is_logged(caplog):
    with caplog.at_level(logging.INFO, logger="fulmen"):
        logger = logging.getLogger("fulmen")
        logger.propagate = True
        try:
            # The plain table is logged (the default with rich installed is RichModelSummary, drawn by rich).
            fulmen.Trainer(max_steps=1, limit_val_batches=0, callbacks=[ModelSummary()]).fit(BoringModel())
        finally:
            logger.propagate = False
    text = caplog.text
    assert "layer" in text and "Linear" in text and "66" in text and "Trainable params" in text


def test_predict_default_step_calls_forward():
    preds = fulmen.Trainer(enable_model_summary=False).predict(BoringModel(), DataLoader(RandomDataset(32, 4),
                                                                                         batch_size=2))
    assert [p.shape for p in preds] == [torch.Size([2, 2])] * 2


def test_init_module_uses_the_precision_dtype_and_can_skip_init():
    trainer = fulmen.Trainer(precision="64-true")
    with trainer.init_module():
        model = BoringModel()
    assert model.layer.weight.dtype == torch.float64
    assert torch.get_default_dtype() == torch.float32  # restored

    torch.manual_seed(0)
    reference = torch.nn.Linear(4, 4).weight.detach().clone()
    torch.manual_seed(0)
    with fulmen.Trainer().init_module(empty_init=True):
        layer = torch.nn.Linear(4, 4)
    assert not torch.equal(layer.weight, reference)  # not initialised by kaiming_uniform_
    assert torch.nn.init.kaiming_uniform_.__name__ == "kaiming_uniform_"  # restored


def test_double_precision_trains_in_float64():
    seen = []

    class Double(BoringModel):
        def training_step(self, batch, batch_idx):
            seen.append((batch.dtype, self.layer.weight.dtype))
            return super().training_step(batch, batch_idx)

    fulmen.Trainer(precision="64-true", max_steps=1, limit_val_batches=0, enable_model_summary=False).fit(Double())
    assert seen == [(torch.float64, torch.float64)]


def test_bf16_mixed_on_cpu_runs_under_autocast():
    seen = []

    class Mixed(BoringModel):
        def training_step(self, batch, batch_idx):
            out = self(batch)
            seen.append((out.dtype, self.layer.weight.dtype))
            return self.loss(out.float())

    trainer = fulmen.Trainer(precision="bf16-mixed", max_steps=2, limit_val_batches=0, enable_model_summary=False)
    trainer.fit(Mixed())
    assert seen == [(torch.bfloat16, torch.float32)] * 2 and trainer.precision == "bf16-mixed"
    with pytest.warns(UserWarning, match="'16-mixed' is not supported on the CPU; using 'bf16-mixed'"):
        assert fulmen.Trainer(precision="16-mixed", accelerator="cpu").precision == "bf16-mixed"


def test_bf16_mixed_autocast_on_the_closure_path_and_in_validation():
    seen = []

    class Mixed(BoringModel):
        def training_step(self, batch, batch_idx):
            out = self(batch)
            seen.append(("train", out.dtype))
            return self.loss(out.float())

        def validation_step(self, batch, batch_idx):
            seen.append(("val", self(batch).dtype))

        def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None):
            optimizer.step(closure=optimizer_closure)

    trainer = fulmen.Trainer(precision="bf16-mixed", max_steps=1, limit_val_batches=1, num_sanity_val_steps=0,
                             val_check_interval=1, enable_model_summary=False)
    trainer.fit(Mixed())
    assert seen == [("train", torch.bfloat16), ("val", torch.bfloat16)]

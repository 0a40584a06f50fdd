"""Faults that used to pass in silence: persistent DataLoader workers left running after an exception, a self.log
error that named the wrong kind of hook, an optimizer over parameters that are not the module's, a NaN loss that
ruins the weights unnoticed, and a hook switched off by setting it to None."""

from __future__ import annotations

import copy
import os
import warnings

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import fulmen as L
from fulmen.demos.boring_classes import BoringModel, RandomDataset
from fulmen.utilities.exceptions import MisconfigurationException


def _trainer(tmp_path, **kwargs):
    defaults = dict(max_epochs=1, limit_train_batches=6, limit_val_batches=2, enable_progress_bar=False,
                    enable_model_summary=False, logger=False, enable_checkpointing=False, num_sanity_val_steps=0,
                    default_root_dir=tmp_path)
    defaults.update(kwargs)
    return L.Trainer(**defaults)


# ---------------------------------------------------------------------------------------------- persistent workers
class _PidFolder:
    """worker_init_fn: each worker process writes its pid into a folder."""

    def __init__(self, folder) -> None:
        self.folder = folder

    def __call__(self, worker_id: int) -> None:
        open(os.path.join(self.folder, str(os.getpid())), "w").close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class FailsAtBatch3(BoringModel):
    def __init__(self, pids) -> None:
        super().__init__()
        self.pids = pids

    def train_dataloader(self):
        return DataLoader(RandomDataset(32, 64), batch_size=2, num_workers=2, persistent_workers=True,
                          worker_init_fn=_PidFolder(self.pids))

    def val_dataloader(self):
        return DataLoader(RandomDataset(32, 64), batch_size=2, num_workers=2, persistent_workers=True,
                          worker_init_fn=_PidFolder(self.pids))

    def training_step(self, batch, batch_idx):
        if batch_idx == 3:
            raise RuntimeError("boom in training_step")
        return super().training_step(batch, batch_idx)


def test_persistent_workers_are_stopped_before_the_exception_reaches_the_caller(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    model = FailsAtBatch3(str(pids))
    trainer = _trainer(tmp_path, val_check_interval=2)  # the val loader's persistent workers are up too
    try:
        trainer.fit(model)
    except RuntimeError as err:
        assert "boom" in str(err)
        started = [int(name) for name in os.listdir(pids)]
        assert len(started) >= 4  # two loaders, two workers each
        assert [pid for pid in started if _alive(pid)] == []  # while the caller still holds the exception
    else:
        raise AssertionError("the fit should have raised")
    # The loaders work again afterwards (new workers start).
    model.training_step = BoringModel.training_step.__get__(model)
    _trainer(tmp_path).fit(model)


# ---------------------------------------------------------------------------------------------- self.log errors
@pytest.mark.parametrize("hook, words", [
    ("configure_optimizers", ["`configure_optimizers`", "save_hyperparameters", "training_step"]),
    ("setup", ["`setup`", "save_hyperparameters"]),
    ("on_train_end", ["`on_train_end`", "*_epoch_end"]),
    ("on_save_checkpoint", ["`on_save_checkpoint`", "checkpoint dict"]),
    ("train_dataloader", ["`train_dataloader`", "from the step that uses it"]),
    ("predict_step", ["`predict_step`", "BasePredictionWriter"]),
])
def test_logging_where_it_cannot_names_the_hook_and_a_fix_for_it(tmp_path, hook, words):
    class Logs(BoringModel):
        pass

    original = getattr(BoringModel, hook)

    def logging_hook(self, *args, **kwargs):
        self.log("value", 1.0)
        return original(self, *args, **kwargs)

    setattr(Logs, hook, logging_hook)
    trainer = _trainer(tmp_path, max_epochs=1, callbacks=[L.callbacks.ModelCheckpoint(dirpath=tmp_path)],
                       enable_checkpointing=True)
    with pytest.raises(MisconfigurationException) as info:
        if hook == "predict_step":
            trainer.predict(Logs(), DataLoader(RandomDataset(32, 4), batch_size=2))
        else:
            trainer.fit(Logs())
    message = str(info.value)
    for word in words:
        assert word in message, message
    if hook != "predict_step":
        assert "predict" not in message


# ---------------------------------------------------------------------------------------------- foreign parameters
class OptimizesACopy(BoringModel):
    def configure_optimizers(self):
        return torch.optim.SGD(copy.deepcopy(self.layer).parameters(), lr=0.1)


def test_an_optimizer_over_parameters_that_are_not_the_modules_warns_at_set_up(tmp_path):
    model = OptimizesACopy()
    before = model.layer.weight.detach().clone()
    with pytest.warns(UserWarning, match=r"Optimizer 0 \(SGD\).*2 of its 2 parameters.*trains nothing"):
        _trainer(tmp_path).fit(model)
    assert torch.equal(model.layer.weight, before)  # what the warning is about: nothing was trained


def test_an_optimizer_over_the_modules_parameters_does_not_warn(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.filterwarnings("ignore", message=".*(num_workers|bottleneck|does not have many workers).*")
        _trainer(tmp_path).fit(BoringModel())


# ---------------------------------------------------------------------------------------------- non-finite loss
class NanInput(BoringModel):
    """Batch 5 of each epoch holds a NaN; the loss is logged, as users do."""

    def __init__(self, prog_bar: bool = False) -> None:
        super().__init__()
        data = torch.randn(48, 32)
        data[21, 3] = float("nan")  # batch 5 at batch_size 4
        self.data, self.prog_bar = data, prog_bar

    def train_dataloader(self):
        return DataLoader(TensorDataset(self.data), batch_size=4)

    def training_step(self, batch, batch_idx):
        loss = self(batch[0]).sum()
        self.log("train_loss", loss, prog_bar=self.prog_bar)
        return loss


def _nonfinite_warnings(record):
    return [str(w.message) for w in record if "non-finite" in str(w.message)]


def test_a_nan_loss_seen_by_a_logger_flush_warns_once_naming_the_step(tmp_path):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        _trainer(tmp_path, max_epochs=2, limit_train_batches=None, logger=L.loggers.CSVLogger(tmp_path),
                 log_every_n_steps=2, limit_val_batches=0).fit(NanInput())
    found = _nonfinite_warnings(record)
    assert len(found) == 1, found
    # Batch 5 made the NaN; the first flush after it is at step 6.
    assert "'train_loss'" in found[0] and "global step 6" in found[0] and "skip_nonfinite" in found[0]


def test_a_nan_loss_seen_by_the_progress_bar_warns(tmp_path):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        _trainer(tmp_path, limit_train_batches=None, enable_progress_bar=True, limit_val_batches=0,
                 callbacks=[L.callbacks.TQDMProgressBar(refresh_rate=1)]).fit(NanInput(prog_bar=True))
    found = _nonfinite_warnings(record)
    assert len(found) == 1 and "'train_loss'" in found[0], found


def test_finite_losses_do_not_warn(tmp_path):
    class Finite(NanInput):
        def __init__(self) -> None:
            super().__init__()
            self.data = torch.nan_to_num(self.data)

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        _trainer(tmp_path, limit_train_batches=None, logger=L.loggers.CSVLogger(tmp_path), log_every_n_steps=1,
                 limit_val_batches=0).fit(Finite())
    assert _nonfinite_warnings(record) == []


# ---------------------------------------------------------------------------------------------- a hook set to None
def test_a_dataloader_hook_set_to_none_is_off(tmp_path):
    """``model.val_dataloader = None`` (or on the class) switches validation off, as in Lightning."""
    model = BoringModel()
    model.val_dataloader = None
    trainer = _trainer(tmp_path)
    trainer.fit(model)
    assert trainer.global_step == 6 and trainer.num_val_batches == []

    class NoVal(BoringModel):
        val_dataloader = None

    trainer = _trainer(tmp_path)
    trainer.fit(NoVal())
    assert trainer.num_val_batches == []



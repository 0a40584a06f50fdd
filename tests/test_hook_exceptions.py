"""An exception in any user hook, in turn: it reaches the caller unchanged; on_exception runs on the callbacks and
the datamodule; the loggers are finalized as "failed" with complete files; the progress bar is closed; no thread
and no DataLoader worker process is left behind."""

from __future__ import annotations

import csv
import gc
import threading
import time

import pytest
import torch

import fulmen
from fulmen.callbacks import Callback, TQDMProgressBar
from fulmen.demos.boring_classes import BoringDataModule, BoringModel
from fulmen.core.hooks import CALLBACK_HOOKS
from fulmen.loggers import CSVLogger

psutil = pytest.importorskip("psutil")
tqdm = pytest.importorskip("tqdm")


class Boom(Exception):
    pass


MODULE_HOOKS = {
    "fit": ["setup", "configure_optimizers", "on_fit_start", "on_train_start", "on_train_epoch_start",
            "on_train_batch_start", "training_step", "on_before_backward", "on_after_backward",
            "on_before_optimizer_step", "on_train_batch_end", "validation_step", "on_validation_epoch_end",
            "on_train_epoch_end", "on_save_checkpoint", "on_train_end", "on_fit_end"],
    "test": ["test_step", "on_test_epoch_end"],
    "predict": ["predict_step", "on_predict_batch_end"],
}
# Callback hooks not called in these runs: on_exception itself, teardown (after the run), on_load_checkpoint.
SKIPPED = {"on_exception", "teardown", "on_load_checkpoint"}


def method_of(hook: str) -> str:
    return "test" if "test" in hook else "predict" if "predict" in hook else "fit"


class Data(BoringDataModule):
    """The boring data through loaders with worker processes, and a record of on_exception."""

    def __init__(self):
        super().__init__()
        self.exceptions = []

    def _loader(self, dataset):
        return torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2)

    def train_dataloader(self):
        return self._loader(self.random_train)

    def val_dataloader(self):
        return self._loader(self.random_val)

    def test_dataloader(self):
        return self._loader(self.random_test)

    def predict_dataloader(self):
        return self._loader(self.random_predict)

    def on_exception(self, exception):
        self.exceptions.append(exception)


class Seen(Callback):
    def __init__(self):
        self.exceptions = []

    def on_exception(self, trainer, pl_module, exception):
        self.exceptions.append(exception)


class Logger(CSVLogger):
    def __init__(self, save_dir):
        super().__init__(save_dir, flush_logs_every_n_steps=1)
        self.statuses = []

    def finalize(self, status):
        self.statuses.append(status)
        super().finalize(status)


def raising(owner_class, hook):
    def hook_fn(self, *args, **kwargs):
        raise Boom(hook)

    return type(f"RaisesIn_{hook}", (owner_class,), {hook: hook_fn})


class Logs(BoringModel):
    def training_step(self, batch, batch_idx):
        out = super().training_step(batch, batch_idx)
        self.log("train_loss", out["loss"])
        return out


def run(tmp_path, model, callbacks, method):
    before_threads = {t.name for t in threading.enumerate()}
    # Processes this test process already had (a wandb-core service that an earlier test on this worker started).
    before_children = {p.pid for p in psutil.Process().children(recursive=True)}
    data, seen, logger, bar = Data(), Seen(), Logger(tmp_path), TQDMProgressBar()
    trainer = fulmen.Trainer(max_epochs=1, limit_train_batches=4, limit_val_batches=2, log_every_n_steps=1,
                             logger=logger, callbacks=[seen, bar, *callbacks], default_root_dir=tmp_path,
                             enable_model_summary=False)
    with pytest.raises(Boom) as caught:
        getattr(trainer, method)(model, datamodule=data)
    exception = caught.value
    del caught
    gc.collect()
    assert seen.exceptions == [exception] and data.exceptions == [exception]
    assert logger.statuses == ["failed"]
    if (tmp_path / "lightning_logs" / "version_0" / "metrics.csv").exists():
        with open(tmp_path / "lightning_logs" / "version_0" / "metrics.csv") as f:
            rows = list(csv.reader(f))
        assert len({len(row) for row in rows}) == 1  # every row whole
    assert bar._bars == {}  # every bar closed
    assert [p for p in psutil.Process().children(recursive=True) if p.pid not in before_children] == []
    # A DataLoader's shutdown closes its index queues without joining their feeder threads: each ends moments
    # later, once it has read the queue's closing sentinel. Such a thread is ending, not left behind.
    deadline = time.monotonic() + 120
    while True:
        left = {t.name for t in threading.enumerate()} - before_threads - {"monitor"}  # tqdm's own, lives on
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not left, left
    return exception


@pytest.mark.parametrize("hook", [h for hooks in MODULE_HOOKS.values() for h in hooks])
def test_an_exception_in_a_module_hook(tmp_path, hook):
    exception = run(tmp_path, raising(Logs, hook)(), [], method_of(hook))
    assert str(exception) == hook


@pytest.mark.parametrize("hook", [h for h in CALLBACK_HOOKS if h not in SKIPPED])
def test_an_exception_in_a_callback_hook(tmp_path, hook):
    exception = run(tmp_path, Logs(), [raising(Callback, hook)()], method_of(hook))
    assert str(exception) == hook


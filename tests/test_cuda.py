"""On a CUDA GPU: the mixed and half precisions, pinned-memory transfers, checkpoints with a GradScaler, and a
training step that never waits for the device. Skipped without CUDA (their CPU-side logic is tested in
test_precision.py, test_transfer.py and test_accelerators.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import fulmen
from fulmen.accelerators import CUDAAccelerator
from fulmen.callbacks import Callback

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


class Classifier(fulmen.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
        self.dtypes: list[torch.dtype] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        out = self.net(x)
        self.dtypes.append(out.dtype)
        loss = nn.functional.cross_entropy(out, y)
        self.log("loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-3)

    def train_dataloader(self):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(512, 64, generator=g)
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, (x[:, :10].argmax(1))), batch_size=32,
                                           pin_memory=True)


def fit(model, **kwargs):
    trainer = fulmen.Trainer(accelerator="cuda", devices=1, max_epochs=3, limit_val_batches=0, logger=False,
                             enable_progress_bar=False, enable_model_summary=False, **kwargs)
    trainer.fit(model)
    return trainer


@pytest.mark.parametrize("precision, compute, weights", [
    ("32-true", torch.float32, torch.float32),
    ("16-mixed", torch.float16, torch.float32),
    ("bf16-mixed", torch.bfloat16, torch.float32),
    ("bf16-true", torch.bfloat16, torch.bfloat16),
    ("16-true", torch.float16, torch.float16),
])
def test_precisions_train_on_cuda(precision, compute, weights):
    model = Classifier()
    trainer = fit(model, precision=precision)
    assert isinstance(trainer.accelerator, CUDAAccelerator) and model.device.type == "cuda"
    assert set(model.dtypes) == {compute} and model.net[0].weight.dtype == weights
    assert float(trainer.callback_metrics["loss"]) < 2.0  # it learned something (chance is ln 10 = 2.3)
    assert (trainer.scaler is not None) == (precision == "16-mixed")


def test_16_mixed_scaler_state_is_checkpointed_and_restored(tmp_path):
    trainer = fit(Classifier(), precision="16-mixed", default_root_dir=tmp_path)
    scale = trainer.scaler.get_scale()
    path = trainer.checkpoint_callback.best_model_path
    assert torch.load(path, weights_only=True)["MixedPrecision"]["scale"] == scale
    resumed = fulmen.Trainer(accelerator="cuda", devices=1, max_epochs=4, limit_val_batches=0, logger=False,
                             enable_progress_bar=False, enable_model_summary=False, precision="16-mixed",
                             default_root_dir=tmp_path)
    resumed.fit(Classifier(), ckpt_path=path)
    assert resumed.global_step == 4 * 16


def test_pinned_batches_arrive_on_the_device():
    seen = []

    class Look(Classifier):
        def on_before_batch_transfer(self, batch, dataloader_idx):
            seen.append(batch[0].is_pinned())
            return batch

        def on_after_batch_transfer(self, batch, dataloader_idx):
            seen.append(batch[0].device.type)
            return batch

    fit(Look(), max_steps=2)
    assert seen == [True, "cuda", True, "cuda"]


def test_a_training_step_with_logging_never_waits_for_the_device():
    """After a few warm-up batches, torch reports any host-device synchronisation as an error, from the end of one
    batch to the end of the next: loading, transfer, hooks, the step with self.log(prog_bar=True), schedulers."""
    checked = []

    class SyncTrap(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if 5 <= batch_idx < 12:
                torch.cuda.set_sync_debug_mode("error" if batch_idx < 11 else "default")
                checked.append(batch_idx)

    class Scheduled(Classifier):
        def configure_optimizers(self):
            opt = super().configure_optimizers()
            return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, 3)}

    try:
        fit(Scheduled(), max_steps=14, callbacks=[SyncTrap()], precision="bf16-mixed", gradient_clip_val=1.0)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert checked == list(range(5, 12))

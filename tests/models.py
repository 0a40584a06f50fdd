"""Small modules shared by the tests."""

from __future__ import annotations

import torch

import fulmen
from fulmen.demos import BoringModel


class LogsLosses(BoringModel):
    """BoringModel that logs ``train_loss`` every step and ``val_loss`` in validation (subclasses add the
    hyperparameters their test needs)."""

    def training_step(self, batch, batch_idx):
        out = super().training_step(batch, batch_idx)
        self.log("train_loss", out["loss"])
        return out

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self.step(batch))


def transfer_model(base):
    """A subclass of ``base`` (either framework's BoringModel) with a ``backbone`` (Linear, BatchNorm, ReLU) under a
    head, whose optimizer takes only the trainable parameters: the layout the finetuning callbacks expect."""

    class Transfer(base):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.backbone = torch.nn.Sequential(torch.nn.Linear(32, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU())
            self.layer = torch.nn.Linear(16, 2)

        def forward(self, x):
            return self.layer(self.backbone(x))

        def configure_optimizers(self):
            return torch.optim.Adam(filter(lambda p: p.requires_grad, self.parameters()), lr=0.01)

        def train_dataloader(self):
            return torch.utils.data.DataLoader(torch.randn(40, 32, generator=torch.Generator().manual_seed(1)),
                                               batch_size=4)

    return Transfer


def swa_model(base, batch_norm=True, scheduler=True):
    """A subclass of ``base`` (either framework's BoringModel): a small MLP, with batch norm or not, SGD with momentum
    (and a StepLR), shuffled fixed data: the setting of the StochasticWeightAveraging tests."""

    class Net(base):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            norm = [torch.nn.BatchNorm1d(8)] if batch_norm else []
            self.layer = torch.nn.Sequential(torch.nn.Linear(32, 8), *norm, torch.nn.ReLU(), torch.nn.Linear(8, 2))

        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)
            if not scheduler:
                return opt
            return [opt], [torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)]

        def train_dataloader(self):
            return torch.utils.data.DataLoader(torch.randn(24, 32, generator=torch.Generator().manual_seed(1)),
                                               batch_size=4, shuffle=True)

    return Net


def quiet_fit(model, callbacks=(), ckpt_path=None, **trainer_kwargs):
    """Fit ``model`` without logger, progress bar, summary or default checkpoint (``trainer_kwargs`` may turn them
    back on), resuming from ``ckpt_path`` if given; returns the trainer."""
    settings = dict(logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    trainer = fulmen.Trainer(callbacks=list(callbacks), **{**settings, **trainer_kwargs})
    trainer.fit(model, ckpt_path=ckpt_path)
    return trainer

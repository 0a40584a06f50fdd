"""Small modules shared by the tests."""

from __future__ import annotations

import torch

import fulmen
from fulmen.demos.boring_classes import BoringModel


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


def tunable_model(base, limit=None, eval_limit=None):
    """A subclass of ``base`` (either framework's BoringModel) for the Tuner: a linear regression with an ``lr`` and a
    ``batch_size`` attribute that its loaders and optimizer read; any step on a batch larger than ``limit`` (training)
    or ``eval_limit`` (validation, test, predict) raises the CUDA out-of-memory error, as a small GPU would."""

    def check(batch, most):
        if most is not None and batch[0].shape[0] > most:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    class Regression(base):
        def __init__(self, lr=0.01, batch_size=4):
            super().__init__()
            torch.manual_seed(0)
            self.layer = torch.nn.Linear(8, 1)
            self.lr, self.batch_size = lr, batch_size
            g = torch.Generator().manual_seed(1)
            x = torch.randn(512, 8, generator=g)
            self.data = torch.utils.data.TensorDataset(x, x @ torch.randn(8, 1, generator=g) + 0.1)

        def step(self, batch):
            return torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1])

        def training_step(self, batch, batch_idx):
            check(batch, limit)
            return self.step(batch)

        def validation_step(self, batch, batch_idx):
            check(batch, eval_limit)
            self.log("val_loss", self.step(batch))

        def test_step(self, batch, batch_idx):
            check(batch, eval_limit)
            self.log("test_loss", self.step(batch))

        def predict_step(self, batch, batch_idx, dataloader_idx=0):
            check(batch, eval_limit)
            return self.layer(batch[0])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.lr)

        def _loader(self, shuffle=False):
            return torch.utils.data.DataLoader(self.data, batch_size=self.batch_size, shuffle=shuffle)

        def train_dataloader(self):
            return self._loader(shuffle=True)

        def val_dataloader(self):
            return self._loader()

        def test_dataloader(self):
            return self._loader()

        def predict_dataloader(self):
            return self._loader()

    return Regression

"""A typed user script, as an editor sees it: tests/test_typing.py runs mypy on it as is (clean) and with typos."""

from __future__ import annotations

import torch

import fulmen as L
from fulmen.callbacks import EarlyStopping, ModelCheckpoint
from fulmen.demos.boring_classes import BoringModel
from fulmen.loggers import CSVLogger
from fulmen.strategies import DDPStrategy


class Model(BoringModel):
    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def main() -> None:
    stop = EarlyStopping(monitor="val_loss", patience=3)
    checkpoint = ModelCheckpoint(monitor="val_loss", save_top_k=2)
    trainer = L.Trainer(max_epochs=2, callbacks=[stop, checkpoint], logger=CSVLogger("logs"),
                        strategy=DDPStrategy(find_unused_parameters=True))
    trainer.fit(Model())
    best: str = checkpoint.best_model_path
    epochs: int = trainer.current_epoch
    print(best, epochs)

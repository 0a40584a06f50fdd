"""Learning-rate schedules: every configure_optimizers scheduler setting steps as in pytorch-lightning."""

from __future__ import annotations

import pytest
import torch

from tests.parity.recorder import load, quiet_trainer

pytest.importorskip("pytorch_lightning")

SCHEDULES = {
    "epoch": lambda opt: {"scheduler": torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5)},
    "step_freq3": lambda opt: {"scheduler": torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5), "interval": "step",
                               "frequency": 3},
    "epoch_freq2": lambda opt: {"scheduler": torch.optim.lr_scheduler.ExponentialLR(opt, 0.5), "frequency": 2},
    "plateau_epoch": lambda opt: {"scheduler": torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0),
                                  "monitor": "val_metric"},
    "plateau_step": lambda opt: {"scheduler": torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0),
                                 "monitor": "val_metric", "interval": "step", "frequency": 2},
    "onecycle": lambda opt: {"scheduler": torch.optim.lr_scheduler.OneCycleLR(opt, 1.0, total_steps=40),
                             "interval": "step"},
}


@pytest.mark.parametrize("name", sorted(SCHEDULES))
@pytest.mark.parametrize("accumulate", [1, 2])
def test_learning_rate_trajectory(name, accumulate):
    trajectories = {}
    for framework in ("fulmen", "pytorch_lightning"):
        pl, demos = load(framework)
        lrs: list[float] = []

        class Sched(demos.BoringModel):
            def validation_step(self, batch, batch_idx):
                self.log("val_metric", 1.0)  # never improves: plateau schedulers reduce after patience

            def on_train_batch_end(self, outputs, batch, batch_idx):
                lrs.append(self.trainer.optimizers[0].param_groups[0]["lr"])

            def configure_optimizers(self):
                opt = torch.optim.SGD(self.parameters(), lr=1.0)
                return {"optimizer": opt, "lr_scheduler": SCHEDULES[name](opt)}

        torch.manual_seed(0)
        trainer = quiet_trainer(pl, max_epochs=3, limit_train_batches=5, limit_val_batches=1,
                                val_check_interval=2 if "plateau_step" in name else 1.0,
                                accumulate_grad_batches=accumulate)
        trainer.fit(Sched())
        trajectories[framework] = lrs + [trainer.optimizers[0].param_groups[0]["lr"]]
    assert trajectories["fulmen"] == pytest.approx(trajectories["pytorch_lightning"])

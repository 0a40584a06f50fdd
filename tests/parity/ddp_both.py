"""One 2-process DDP fit on the CPU (gloo), on fulmen or on pytorch_lightning, started as its own program (each
framework's launcher starts the second process by running this command again).

    python tests/parity/ddp_both.py DIR fulmen|lightning [--shuffle]

The training loader is plain (``--shuffle``: shuffled); the strategy inserts the DistributedSampler. Rank 0 writes
the final weights and the samples each rank trained on to DIR/<framework>.pt.
"""

from __future__ import annotations

import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))


def main() -> None:
    folder, framework = sys.argv[1], sys.argv[2]
    shuffle = "--shuffle" in sys.argv
    if framework == "fulmen":
        import fulmen as L
    else:
        import pytorch_lightning as L

    L.seed_everything(7, verbose=False)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(48, 8, generator=g)
    dataset = torch.utils.data.TensorDataset(torch.arange(48), x, (x.sum(1) > 0).long())

    class Net(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 2))
            self.seen: list[int] = []

        def training_step(self, batch, batch_idx):
            index, inputs, target = batch
            self.seen += index.tolist()
            return nn.functional.cross_entropy(self.net(inputs), target)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

        def train_dataloader(self):
            return torch.utils.data.DataLoader(dataset, batch_size=4, shuffle=shuffle)

    model = Net()
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", devices=2, strategy="ddp", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=folder)
    trainer.fit(model)
    seen = model.all_gather(torch.tensor(model.seen)).tolist()  # [rank][sample]
    if trainer.is_global_zero:
        torch.save({"weights": {k: v.detach() for k, v in model.state_dict().items()}, "seen": seen},
                   os.path.join(folder, f"{framework}.pt"))


if __name__ == "__main__":
    main()

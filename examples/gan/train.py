"""A GAN with manual optimization and two optimizers: a generator learns to draw points on a ring of eight
Gaussians from noise, against a discriminator. Each step trains the discriminator, then the generator, each with its
own optimizer, as Lightning's manual optimization does.

    python examples/gan/train.py [--epochs 30] [--plot ring.png]
"""

from __future__ import annotations

import argparse
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import fulmen as L


def ring(n: int, modes: int = 8, radius: float = 2.0, spread: float = 0.05, seed: int = 0) -> torch.Tensor:
    """``n`` points around ``modes`` Gaussians evenly placed on a circle of ``radius``."""
    g = torch.Generator().manual_seed(seed)
    angles = torch.randint(modes, (n,), generator=g) * (2 * math.pi / modes)
    centres = torch.stack([angles.cos(), angles.sin()], dim=1) * radius
    return centres + spread * torch.randn(n, 2, generator=g)


def mlp(inputs: int, outputs: int, width: int = 128) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, width), nn.LeakyReLU(0.2), nn.Linear(width, width), nn.LeakyReLU(0.2),
                         nn.Linear(width, outputs))


class GAN(L.LightningModule):
    """Generator and discriminator, trained in turn each step (non-saturating loss)."""

    def __init__(self, latent: int = 8, lr: float = 1e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False  # two optimizers, stepped by hand
        self.generator = mlp(latent, 2)
        self.discriminator = mlp(2, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z)

    def training_step(self, batch, batch_idx):
        (real,) = batch
        opt_g, opt_d = self.optimizers()
        z = torch.randn(real.shape[0], self.hparams.latent, device=self.device)
        ones = torch.ones(real.shape[0], 1, device=self.device)

        # The discriminator: real points are 1, generated ones 0 (the generator is not trained by this loss).
        with self.toggled_optimizer(opt_d):
            fake = self(z).detach()
            d_loss = (F.binary_cross_entropy_with_logits(self.discriminator(real), ones)
                      + F.binary_cross_entropy_with_logits(self.discriminator(fake), 1 - ones))
            opt_d.zero_grad()
            self.manual_backward(d_loss)
            opt_d.step()

        # The generator: make the discriminator call its points real.
        with self.toggled_optimizer(opt_g):
            g_loss = F.binary_cross_entropy_with_logits(self.discriminator(self(z)), ones)
            opt_g.zero_grad()
            self.manual_backward(g_loss)
            self.clip_gradients(opt_g, gradient_clip_val=1.0)
            opt_g.step()

        self.log_dict({"d_loss": d_loss, "g_loss": g_loss}, prog_bar=True)

    def configure_optimizers(self):
        betas = (0.5, 0.999)
        return [torch.optim.Adam(self.generator.parameters(), lr=self.hparams.lr, betas=betas),
                torch.optim.Adam(self.discriminator.parameters(), lr=self.hparams.lr, betas=betas)]

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        z = torch.randn(n, self.hparams.latent, generator=torch.Generator().manual_seed(seed))
        return self(z.to(self.device)).cpu()


def modes_covered(points: torch.Tensor, modes: int = 8, radius: float = 2.0, within: float = 0.5) -> int:
    """How many of the ring's Gaussians have at least 2% of ``points`` within ``within`` of their centre."""
    angles = torch.arange(modes) * (2 * math.pi / modes)
    centres = torch.stack([angles.cos(), angles.sin()], dim=1) * radius
    near = torch.cdist(points, centres) < within
    return int((near.float().mean(0) > 0.02).sum())


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--root", default=".")
    parser.add_argument("--plot", help="draw the real and generated points into this PNG (needs matplotlib)")
    args = parser.parse_args(argv)

    L.seed_everything(0)
    loader = DataLoader(TensorDataset(ring(4096)), batch_size=128, shuffle=True)
    model = GAN()
    trainer = L.Trainer(max_epochs=args.epochs, default_root_dir=args.root, enable_checkpointing=False)
    trainer.fit(model, loader)

    fake = model.sample(2000)
    covered = modes_covered(fake)
    print(f"the generator covers {covered} of the ring's 8 modes; "
          f"mean radius {fake.norm(dim=1).mean():.2f} (the ring's: 2.00)")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        real = ring(2000, seed=1)
        plt.figure(figsize=(4, 4))
        plt.scatter(real[:, 0], real[:, 1], s=2, label="real")
        plt.scatter(fake[:, 0], fake[:, 1], s=2, label="generated")
        plt.legend()
        plt.savefig(args.plot)
    return covered


if __name__ == "__main__":
    main()

"""A character-level GPT trained on text that ships with Python: the source code of a few standard-library modules
(no download). It logs its throughput, accumulates and clips gradients, uses bf16-mixed precision where the device
supports it, and writes a sample at the end.

    python examples/char_gpt/train.py [--max-steps 300] [--out sample.txt]
"""

from __future__ import annotations

import argparse
import inspect
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

import fulmen as L
from fulmen.callbacks import ThroughputMonitor
from fulmen.loggers import CSVLogger
from fulmen.utilities.throughput import measure_flops

MODULES = ("argparse", "textwrap", "string", "difflib", "csv")


def corpus(modules: tuple[str, ...] = MODULES) -> str:
    """The Python source of ``modules``, one after the other."""
    import importlib

    return "\n\n".join(inspect.getsource(importlib.import_module(name)) for name in modules)


class CharData(Dataset):
    """Every window of ``block + 1`` characters: the first ``block`` are the input, the last ``block`` the target."""

    def __init__(self, text: str, block: int) -> None:
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}
        self.data = torch.tensor([self.index[c] for c in text], dtype=torch.long)
        self.block = block

    def __len__(self) -> int:
        return len(self.data) - self.block - 1

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        chunk = self.data[i:i + self.block + 1]
        return chunk[:-1], chunk[1:]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i] for i in ids)


class Block(nn.Module):
    """Pre-norm transformer block: causal self-attention, then an MLP, each with a residual."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.mlp(self.norm2(x))


class CharGPT(L.LightningModule):
    """A small GPT over characters."""

    def __init__(self, vocab: int, block: int = 64, width: int = 128, layers: int = 3, heads: int = 4,
                 learning_rate: float = 3e-3, warmup: int = 30) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.tokens, self.positions = nn.Embedding(vocab, width), nn.Embedding(block, width)
        self.blocks = nn.Sequential(*(Block(width, heads) for _ in range(layers)))
        self.norm, self.head = nn.LayerNorm(width), nn.Linear(width, vocab, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.tokens(ids) + self.positions(torch.arange(ids.shape[1], device=ids.device))
        return self.head(self.norm(self.blocks(x)))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x).flatten(0, 1), y.flatten())
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.learning_rate, weight_decay=0.01)
        total = max(self.trainer.estimated_stepping_batches, 1)
        warmup = min(self.hparams.warmup, total)

        def factor(step: int) -> float:  # linear warm-up, then cosine decay to a tenth
            if step < warmup:
                return (step + 1) / warmup
            return 0.1 + 0.45 * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1)))

        return {"optimizer": opt, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.LambdaLR(opt, factor),
                                                    "interval": "step"}}

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, length: int, temperature: float = 0.8,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Extend ``prompt`` (1-D ids) by ``length`` sampled characters."""
        ids = prompt[None].to(self.device)
        for _ in range(length):
            logits = self(ids[:, -self.hparams.block:])[:, -1] / temperature
            next_id = torch.multinomial(logits.float().softmax(-1).cpu(), 1, generator=generator).to(self.device)
            ids = torch.cat([ids, next_id], dim=1)
        return ids[0]


def precision() -> str:
    """bf16-mixed on a GPU that supports it; full precision elsewhere (bf16 on a CPU is slower than float32)."""
    return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "32-true"


def last_logged(trainer: L.Trainer, key: str) -> float:
    """The last value of ``key`` in the run's metrics.csv (the ThroughputMonitor writes to the logger only)."""
    import csv

    with open(trainer.logger.experiment.metrics_file_path) as f:
        values = [row[key] for row in csv.DictReader(f) if row.get(key)]
    return float(values[-1]) if values else float("nan")


def main(argv: Optional[list[str]] = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--accumulate", type=int, default=2)
    parser.add_argument("--root", default=".")
    parser.add_argument("--out", help="also write the sample to this file")
    args = parser.parse_args(argv)

    L.seed_everything(0)
    data = CharData(corpus(), block=64)
    model = CharGPT(vocab=len(data.chars), block=data.block)
    with torch.device("meta"):  # count the FLOPs of a batch (forward and backward) without computing it
        twin, ids = CharGPT(vocab=len(data.chars), block=data.block), torch.zeros(args.batch_size, data.block,
                                                                                  dtype=torch.long)
        model.flops_per_batch = measure_flops(twin, lambda: twin(ids), lambda out: out.sum())
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True, drop_last=True)
    throughput = ThroughputMonitor(batch_size_fn=lambda batch: batch[0].shape[0],
                                   length_fn=lambda batch: batch[0].numel(), window_size=20)
    trainer = L.Trainer(max_steps=args.max_steps, accumulate_grad_batches=args.accumulate, gradient_clip_val=1.0,
                        precision=precision(), callbacks=[throughput], log_every_n_steps=10,
                        logger=CSVLogger(args.root), enable_checkpointing=False)
    trainer.fit(model, loader)

    model.eval()
    prompt = torch.tensor([data.index[c] for c in "def "])
    sample = data.decode(model.generate(prompt, 300, generator=torch.Generator().manual_seed(0)).tolist())
    print(f"final train_loss {float(trainer.callback_metrics['train_loss']):.3f}; "
          f"{last_logged(trainer, 'train/device/items_per_sec'):.0f} characters/s, "
          f"{last_logged(trainer, 'train/device/flops_per_sec') / 1e9:.1f} GFLOP/s\n--- sample ---\n{sample}")
    if args.out:
        with open(args.out, "w") as f:
            f.write(sample)
    return sample


if __name__ == "__main__":
    main()

"""Tokens per second of a small GPT-style model in bf16-mixed: fulmen against the same hand-written loop, with and
without torch.compile, side by side in one process (runs alternate; the median of the per-round ratios).

The batches are made on the device beforehand, so the loops differ only in what runs around the step. The
hand-written loop is what a careful user writes: autocast(bfloat16), AdamW (fused), clip_grad_norm_, zero_grad
(set_to_none), and the loss kept as a tensor for a progress print (no .item() per step).

Run on a GPU: ``python bench/gpu_throughput.py`` (about two minutes on an H100). ``--tiny`` runs a few steps of a
tiny model on the CPU, to check the script.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings

import torch
from torch import nn

warnings.filterwarnings("ignore")
logging.disable(logging.INFO)


class Block(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False, is_causal=True)[0]
        return x + self.mlp(self.norm2(x))


class GPT(nn.Module):
    def __init__(self, vocab: int, width: int, depth: int, heads: int, context: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.position = nn.Parameter(torch.zeros(context, width))
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)
        self.register_buffer("mask", torch.triu(torch.full((context, context), float("-inf")), 1), persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.position[: tokens.size(1)]
        for block in self.blocks:
            x = block(x, self.mask)
        return self.head(self.norm(x))


def make_model(args: argparse.Namespace) -> GPT:
    torch.manual_seed(0)
    return GPT(args.vocab, args.width, args.depth, args.heads, args.context)


def loss_of(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    logits = model(batch[:, :-1])
    return nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())


def optimizer_for(model: nn.Module, device: str) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=3e-4, fused=device == "cuda")


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def raw_loop(args: argparse.Namespace, data: list[torch.Tensor], compiled: bool) -> float:
    model = make_model(args).to(args.device)
    forward = torch.compile(model) if compiled else model
    opt = optimizer_for(model, args.device)
    kept = []
    for step, batch in enumerate(data):
        if step == args.warmup:
            sync(args.device)
            start = time.perf_counter()
        with torch.autocast(args.device, dtype=torch.bfloat16):
            loss = loss_of(forward, batch)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        kept[:] = [loss.detach()]
    sync(args.device)
    return time.perf_counter() - start


def fulmen_loop(args: argparse.Namespace, data: list[torch.Tensor], compiled: bool) -> float:
    import fulmen

    class Lit(fulmen.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.gpt = make_model(args)

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            return self.gpt(tokens)

        def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
            loss = loss_of(self, batch)
            self.log("loss", loss, prog_bar=True)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return optimizer_for(self, args.device)

    class Clock(fulmen.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == args.warmup:
                sync(args.device)
                self.start = time.perf_counter()

        def on_train_end(self, trainer, pl_module):
            sync(args.device)
            self.elapsed = time.perf_counter() - self.start

    clock = Clock()
    trainer = fulmen.Trainer(accelerator=args.device, devices=1, precision="bf16-mixed", max_epochs=1,
                             gradient_clip_val=1.0, compile=compiled, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, callbacks=[clock])
    from overhead import Batches  # (bench/ is this script's folder)

    trainer.fit(Lit(), train_dataloaders=Batches(data))
    return clock.elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--tiny", action="store_true", help="a few steps of a tiny model on the CPU")
    args = parser.parse_args()
    args.device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    if args.tiny:
        args.rounds, args.steps, args.warmup, args.batch, args.context = 1, 4, 1, 2, 16
        args.width, args.depth, args.heads, args.vocab = 32, 1, 2, 64
    torch.backends.cuda.matmul.allow_tf32 = True
    g = torch.Generator().manual_seed(0)
    data = [torch.randint(0, args.vocab, (args.batch, args.context + 1), generator=g).to(args.device)
            for _ in range(args.steps)]
    tokens = args.batch * args.context * (args.steps - args.warmup)
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"{name}: GPT {args.depth}x{args.width}, context {args.context}, batch {args.batch}, bf16-mixed, "
          f"{args.steps - args.warmup} timed steps after {args.warmup}, {args.rounds} rounds")
    for compiled in (False, True):
        runners = {"raw": lambda: raw_loop(args, data, compiled), "fulmen": lambda: fulmen_loop(args, data, compiled)}
        for run in runners.values():
            run()  # warm-up (and compilation)
        times: dict[str, list[float]] = {k: [] for k in runners}
        for i in range(args.rounds):
            for key in (list(runners) if i % 2 == 0 else list(runners)[::-1]):
                times[key].append(runners[key]())
        ratio = statistics.median(r / f for r, f in zip(times["raw"], times["fulmen"]))
        best = {k: tokens / min(v) for k, v in times.items()}
        print(f"  compile={compiled}: raw {best['raw']:,.0f} tokens/s, fulmen {best['fulmen']:,.0f} tokens/s; "
              f"fulmen/raw throughput (median of rounds) {ratio:.3f}")


if __name__ == "__main__":
    main()

"""A DDP run on the CPU (gloo), started as its own program so that fulmen's launcher can start the other processes
by running this command again.

    python tests/ddp_scenario.py DIR --devices N --batch B [--samples N] [--fail-rank R | --kill-rank R |
                                 --signal-rank R --fail-at STEP] [--noisy] [--resume]

Trains a small MLP on fixed samples (64 by default; the processes' shares shuffled as DDP shuffles them) with validation, logging a train loss (on_epoch,
sync_dist) and a val loss (sync_dist). Rank 0 writes the final weights and the callback metrics to DIR/result.pt,
and every rank appends "rank world_size global_step" to DIR/ranks.txt. Checkpoints go to DIR/checkpoints. The
fulmen frames between Trainer.fit and the first training_step go to DIR/frames-<rank>.txt. At training step STEP, ``--fail-rank R``
raises in rank R, ``--kill-rank R`` makes rank R SIGKILL itself, ``--signal-rank R`` sends rank R (only) SIGTERM.
``--stage validate|test|predict`` runs that method instead of fit, over ``--eval-samples`` samples
(``--signal-rank R --fail-at B`` then signals rank R at its batch B). ``--noisy`` shuffles, adds dropout and seeds each rank differently (so exact resume needs every rank's random
states); ``--resume`` continues from ckpt_path="last"; ``--fsdp full|sharded`` shards with FSDPStrategy; ``--deepspeed STAGE``
trains with DeepSpeedStrategy at that ZeRO stage (and resumes with ``weights_only=False``, unless ``--untrusted``);
``--precision P`` sets the Trainer's precision; ``--async`` writes checkpoints in the background (AsyncCheckpointIO).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import fulmen as L  # noqa: E402
from fulmen.callbacks import ModelCheckpoint  # noqa: E402
from fulmen.plugins.io import AsyncCheckpointIO  # noqa: E402
from fulmen.strategies.fsdp import FSDPStrategy  # noqa: E402


def data(n: int) -> torch.utils.data.TensorDataset:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(n, 8, generator=g)
    return torch.utils.data.TensorDataset(x, (x.sum(1) > 0).long())


class Net(L.LightningModule):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__()
        torch.manual_seed(0)
        dropout = [nn.Dropout(0.3)] if args.noisy else []
        self.net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), *dropout, nn.Linear(16, 2))
        self.spare = nn.Linear(2, 2) if args.unused else None  # a layer the loss never uses
        self.args = args
        self.automatic_optimization = not getattr(args, "manual", False)  # (tests rebuild it with fewer args)

    def prepare_data(self):
        # Once per node (local rank 0 only), while the others wait: record who ran it.
        with open(os.path.join(self.args.dir, "prepared.txt"), "a") as f:
            f.write(f"{os.environ.get('LOCAL_RANK', '0')}\n")

    def on_train_start(self):
        if self.args.noisy and not self.args.resume:
            torch.manual_seed(100 + self.global_rank)  # each rank draws its own dropout masks

    def training_step(self, batch, batch_idx):
        args = self.args
        if self.global_step == 0 and batch_idx == 0 and not args.resume:
            stack = traceback.extract_stack()
            fits = [i for i, f in enumerate(stack) if f.name == "fit" and f.filename.endswith("trainer.py")]
            frames = [f"{os.path.basename(f.filename)}:{f.name}" for f in stack[fits[-1] + 1:-1]
                      if "/fulmen/" in f.filename] if fits else []  # (spawned processes have no fit frame)
            with open(os.path.join(args.dir, f"frames-{self.global_rank}.txt"), "w") as f:
                f.write("\n".join(frames))
        if self.global_step == args.fail_at and not args.resume:
            if self.global_rank == args.fail_rank:
                raise ValueError(f"a bug in rank {self.global_rank}")
            if self.global_rank == args.kill_rank:
                os.kill(os.getpid(), signal.SIGKILL)
            if self.global_rank == args.signal_rank:
                os.kill(os.getpid(), signal.SIGTERM)
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True, sync_dist=True)
        self.log("step_loss", loss, on_step=True, on_epoch=False, sync_dist=True, reduce_fx="mean")
        if args.manual:  # the same SGD step, written out
            opt = self.optimizers()
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()
        return loss

    def _signal_in_evaluation(self, batch_idx):
        if self.args.stage != "fit" and batch_idx == self.args.fail_at and self.global_rank == self.args.signal_rank:
            os.kill(os.getpid(), signal.SIGTERM)

    def validation_step(self, batch, batch_idx):
        self._signal_in_evaluation(batch_idx)
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self.net(x), y), sync_dist=True)

    def test_step(self, batch, batch_idx):
        self._signal_in_evaluation(batch_idx)
        x, y = batch
        self.log("test_loss", nn.functional.cross_entropy(self.net(x), y), sync_dist=True)

    def predict_step(self, batch, batch_idx):
        self._signal_in_evaluation(batch_idx)
        return self.net(batch[0])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)

    def train_dataloader(self):
        dataset = data(self.args.samples)
        if self.args.devices * self.args.num_nodes == 1 and not self.args.noisy:
            # Under DDP the training share is always shuffled (as in Lightning), by a DistributedSampler seeded with
            # the global seed: one process reading the same permutation sees, batch by batch, the samples the
            # processes see together.
            sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=0)
            return torch.utils.data.DataLoader(dataset, batch_size=self.args.batch, sampler=sampler)
        return torch.utils.data.DataLoader(dataset, batch_size=self.args.batch, shuffle=self.args.noisy)

    def val_dataloader(self):
        return torch.utils.data.DataLoader(data(self.args.eval_samples), batch_size=self.args.batch)

    test_dataloader = predict_dataloader = val_dataloader


class WatchedWrites(AsyncCheckpointIO):
    """AsyncCheckpointIO that notes in DIR/writes-<pid>.txt, for each save, whether its file or folder was already in
    place when the loop's save returned (it must not be: the write waits for a gate opened only after that note),
    and that can SIGKILL rank 0 in a background write (``--kill-in-write``)."""

    def __init__(self, folder: str, kill_at: int) -> None:
        super().__init__()
        self.folder, self.kill_at, self.count = folder, kill_at, 0

    def start_write(self, checkpoint, path, write):
        import threading

        from fulmen.checkpoint import io

        gate = threading.Event()
        self.count += 1
        kill = self.count == self.kill_at

        def held(snapshot):
            gate.wait()
            if kill:  # rank 0 publishes the folder: it dies instead, every rank's shards written
                io.publish_folder = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
            write(snapshot)

        super().start_write(checkpoint, path, held)
        with open(os.path.join(self.folder, f"writes-{os.getpid()}.txt"), "a") as f:
            f.write(f"{os.path.exists(path)}\n")
        gate.set()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--num-nodes", type=int, default=1)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--fail-rank", type=int, default=-1)
    parser.add_argument("--kill-rank", type=int, default=-1)
    parser.add_argument("--signal-rank", type=int, default=-1)
    parser.add_argument("--fail-at", type=int, default=-1)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--noisy", action="store_true")
    parser.add_argument("--accumulate", type=int, default=1)
    parser.add_argument("--unused", action="store_true")
    parser.add_argument("--strategy", default="ddp")
    parser.add_argument("--fsdp", choices=["full", "sharded"], default=None)
    parser.add_argument("--deepspeed", type=int, choices=[1, 2, 3], default=None, help="the ZeRO stage")
    parser.add_argument("--untrusted", action="store_true", help="resume without weights_only=False")
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--manual", action="store_true", help="manual optimization")
    parser.add_argument("--offload", action="store_true", help="ZeRO-Offload of the optimizer (and the parameters "
                        "at stage 3) to the CPU, from a DeepSpeed config dict")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--async", dest="background", action="store_true",
                        help="checkpoints written in the background (AsyncCheckpointIO)")
    parser.add_argument("--kill-in-write", type=int, default=-1,
                        help="with --async, rank 0 SIGKILLs itself in its N-th background write (1 = the first), "
                        "once the shards are written and before the folder is put in place")
    parser.add_argument("--stage", choices=["fit", "validate", "test", "predict"], default="fit")
    parser.add_argument("--eval-samples", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    several = args.devices * args.num_nodes > 1
    strategy = args.strategy if several else "auto"
    if args.fsdp and several:  # each Linear its own unit, the rest in the root unit
        strategy = FSDPStrategy(state_dict_type=args.fsdp, auto_wrap_policy={nn.Linear})
    if args.deepspeed and several:
        from fulmen.strategies.deepspeed import DeepSpeedStrategy

        strategy = DeepSpeedStrategy(stage=args.deepspeed)
        if args.offload:
            # DeepSpeed would ask for its CPU Adam (a compiled op) with offload; SGD is allowed by this setting.
            offload = {"device": "cpu"}
            strategy = DeepSpeedStrategy(config={
                "zero_optimization": {"stage": args.deepspeed, "offload_optimizer": offload,
                                      **({"offload_param": offload} if args.deepspeed == 3 else {})},
                "zero_force_ds_cpu_optimizer": False, "zero_allow_untested_optimizer": True,
            })
    trainer = L.Trainer(accelerator="cpu", devices=args.devices, num_nodes=args.num_nodes, strategy=strategy,
                        precision=args.precision,
                        max_epochs=3, default_root_dir=args.dir, enable_progress_bar=False, enable_model_summary=False,
                        log_every_n_steps=1, accumulate_grad_batches=args.accumulate,
                        callbacks=[ModelCheckpoint(dirpath=os.path.join(args.dir, "checkpoints"))],
                        plugins=[WatchedWrites(args.dir, args.kill_in_write)] if args.background else None)
    model = Net(args)
    if args.stage != "fit":
        getattr(trainer, args.stage)(model)
        with open(os.path.join(args.dir, "ranks.txt"), "a") as f:
            f.write(f"{trainer.global_rank} {args.stage} done\n")
        return
    # A DeepSpeed checkpoint's engine files hold pickled objects: resuming from them is an explicit opt-in.
    trust = args.deepspeed and not args.untrusted
    trainer.fit(model, ckpt_path="last" if args.resume else None, weights_only=False if trust else None)
    with open(os.path.join(args.dir, "ranks.txt"), "a") as f:
        f.write(f"{trainer.global_rank} {trainer.world_size} {trainer.global_step} {trainer.node_rank} "
                f"{trainer.local_rank}\n")
    weights = model.state_dict()
    if args.deepspeed == 3 and several:  # the checkpoint holds the gathered weights
        weights = torch.load(os.path.join(trainer.checkpoint_callback.best_model_path, "meta.ckpt"),
                             weights_only=True)["state_dict"]
    if args.fsdp and several:  # gather the shards (every rank takes part)
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        weights = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if trainer.is_global_zero:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        torch.save({"weights": weights, "metrics": metrics,
                    "best": trainer.checkpoint_callback.best_model_path}, os.path.join(args.dir, "result.pt"))


if __name__ == "__main__":
    main()

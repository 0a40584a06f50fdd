"""Training on an XLA device through torch_xla, on the CPU (``PJRT_DEVICE=CPU``): the same graphs as on a TPU, the
same lazy execution and random generator, so the strategy's cuts, checkpoints and exact resume are exercised here.

torch_xla is released for one torch version at a time, so it is not in the dev set-up (skipped there). To run these:

    python3.11 -m venv /tmp/xla && /tmp/xla/bin/pip install torch==2.9.0 torch_xla==2.9.0 pytest pyyaml
    /tmp/xla/bin/pip install --no-deps -e . && /tmp/xla/bin/python -m pytest tests/test_xla.py
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.skipif(importlib.util.find_spec("torch_xla") is None, reason="needs torch_xla")

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PJRT_DEVICE="CPU", PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")

FIT = """
import sys, torch, fulmen
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

accelerator, precision, out = sys.argv[1], sys.argv[2], sys.argv[3]

class Net(fulmen.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 2))
    def training_step(self, batch, batch_idx):
        x, y = batch
        out = self.net(x)
        self.log("out_dtype", float(out.dtype == torch.bfloat16))
        loss = nn.functional.cross_entropy(out.float(), y)
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        return loss
    def validation_step(self, batch, batch_idx):
        assert torch.is_grad_enabled() is False and not torch.is_inference_mode_enabled()
        self.log("val_loss", nn.functional.cross_entropy(self.net(batch[0]).float(), batch[1]))
    def test_step(self, batch, batch_idx):
        self.log("test_loss", nn.functional.cross_entropy(self.net(batch[0]).float(), batch[1]))
    def predict_step(self, batch, batch_idx):
        return self.net(batch[0]).argmax(1)
    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.01)

g = torch.Generator().manual_seed(0)
x = torch.randn(64, 8, generator=g); y = (x.sum(1) > 0).long()
loader = lambda: DataLoader(TensorDataset(x, y), batch_size=8)
fulmen.seed_everything(3)
model = Net()
trainer = fulmen.Trainer(accelerator=accelerator, precision=precision, max_epochs=3, accumulate_grad_batches=2,
                         gradient_clip_val=1.0, enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=out, log_every_n_steps=1)
trainer.fit(model, loader(), loader())
metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
test = trainer.test(model, loader(), verbose=False)[0]
predictions = torch.cat([p.cpu() for p in trainer.predict(model, loader())])
torch.save({"weights": {k: v.cpu() for k, v in model.state_dict().items()},
            "metrics": metrics, "test": test,
            "predictions": predictions, "device": str(next(model.parameters()).device),
            "best": trainer.checkpoint_callback.best_model_path}, out + "/result.pt")
"""


def fit(tmp_path: Path, accelerator: str, precision: str = "32-true") -> dict:
    out = tmp_path / accelerator
    out.mkdir()
    run = subprocess.run([sys.executable, "-c", FIT, accelerator, precision, str(out)], env=ENV, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return torch.load(out / "result.pt", weights_only=True)


def test_a_fit_on_xla_matches_the_cpu_and_saves_cpu_checkpoints(tmp_path):
    cpu, xla = fit(tmp_path, "cpu"), fit(tmp_path, "tpu")
    assert xla["device"] == "xla:0" and cpu["device"] == "cpu"
    for name, value in cpu["weights"].items():
        torch.testing.assert_close(xla["weights"][name], value, atol=1e-5, rtol=1e-4)
    for name in ("train_loss_epoch", "val_loss"):
        assert abs(xla["metrics"][name] - cpu["metrics"][name]) < 1e-5, name
    assert abs(xla["test"]["test_loss"] - cpu["test"]["test_loss"]) < 1e-5
    assert torch.equal(xla["predictions"], cpu["predictions"])
    # The checkpoint holds CPU tensors: it loads anywhere, with weights_only=True.
    checkpoint = torch.load(xla["best"], weights_only=True, map_location=None)
    assert {t.device.type for t in checkpoint["state_dict"].values()} == {"cpu"}
    assert checkpoint["global_step"] == 12


def test_bf16_mixed_runs_the_forward_in_bfloat16(tmp_path):
    result = fit(tmp_path, "tpu", "bf16-mixed")
    assert result["metrics"]["out_dtype"] == 1.0
    assert {v.dtype for v in result["weights"].values()} == {torch.float32}
    assert result["metrics"]["train_loss_epoch"] < 0.6  # it learns (the loss starts near log 2 = 0.69)


def _scenario(folder: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(ENV, SCENARIO_ACCELERATOR="tpu")
    run = subprocess.run([sys.executable, str(ROOT / "tests" / "resume_scenario.py"), str(folder), *args], env=env,
                         capture_output=True, text=True, timeout=600)
    if check:
        assert run.returncode == 0, run.stderr[-3000:]
    return run


def test_killed_inside_an_accumulation_window_then_resumed_gives_the_same_weights(tmp_path):
    """Dropout and torch.randn_like draw from torch_xla's generator, which every cut of the graph used to advance:
    the resumed run must draw the very same numbers."""
    full, killed = tmp_path / "full", tmp_path / "killed"
    full.mkdir()
    killed.mkdir()
    _scenario(full)
    assert _scenario(killed, "--kill-at", "5", check=False).returncode == -signal.SIGKILL
    _scenario(killed, "--resume")
    expected = torch.load(full / "final.pt", weights_only=True)
    resumed = torch.load(killed / "final.pt", weights_only=True)
    for name, value in expected.items():
        assert torch.equal(value, resumed[name]), name
    assert (full / "epochs.txt").read_text().splitlines() == (killed / "epochs.txt").read_text().splitlines()[-3:]


DROPOUT = """
import sys, torch, fulmen
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

class Net(fulmen.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.5), nn.Linear(16, 1))
    def training_step(self, batch, batch_idx):
        return self.net(batch[0]).pow(2).mean()
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

fulmen.seed_everything(int(sys.argv[1]))  # before the Trainer: torch_xla is not in use yet
torch.manual_seed(0)  # the same initial weights whatever the seed: only the XLA generator's draws differ
model = Net()
fulmen.Trainer(accelerator="tpu", max_steps=4, logger=False, enable_progress_bar=False, enable_model_summary=False,
               enable_checkpointing=False).fit(model, DataLoader(TensorDataset(torch.ones(16, 8)), batch_size=4))
torch.save({k: v.cpu() for k, v in model.state_dict().items()}, sys.argv[2])
"""


def test_seed_everything_seeds_the_xla_generator(tmp_path):
    def weights(seed: int, name: str) -> dict:
        run = subprocess.run([sys.executable, "-c", DROPOUT, str(seed), str(tmp_path / name)], env=ENV,
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        return torch.load(tmp_path / name, weights_only=True)

    first, again, other = weights(1, "a.pt"), weights(1, "b.pt"), weights(2, "c.pt")
    assert all(torch.equal(first[k], again[k]) for k in first)
    # Same initial weights (on the CPU, torch's generator), other dropout masks (drawn on the XLA device).
    assert not all(torch.equal(first[k], other[k]) for k in first)

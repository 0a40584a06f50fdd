"""Preemption: SIGTERM (and SIGUSR1 under SLURM) sent to a real process ends it at a batch boundary with a
checkpoint, and the resumed run ends with bitwise the weights of a run never stopped."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
import torch

import fulmen as L
from fulmen.callbacks import Callback, OnExceptionCheckpoint
from fulmen.checkpoint import io
from fulmen.demos.boring_classes import BoringModel
from fulmen.utilities.exceptions import SIGTERMException

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "tests" / "resume_scenario.py"
sys.path.insert(0, str(SCENARIO.parent))
from resume_scenario import epoch_losses  # noqa: E402


def _start(folder, *args, env=None):
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", SCENARIO_CHECKPOINTS="0", **(env or {}))
    return subprocess.Popen([sys.executable, str(SCENARIO), str(folder), *args], env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run(folder, *args, env=None, expect=0):
    proc = _start(folder, *args, env=env)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == expect, err[-3000:]
    return err


def _assert_same_weights(expected, folder):
    weights, losses = expected
    resumed = torch.load(folder / "final.pt", weights_only=True)
    for name, value in weights.items():
        assert torch.equal(value, resumed[name]), name
    assert epoch_losses(folder) == losses


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("full")
    _run(folder)
    return torch.load(folder / "final.pt", weights_only=True), epoch_losses(folder)


@pytest.mark.parametrize("where, step", [("train", 5), ("val", 4)])
def test_sigterm_saves_a_checkpoint_that_resumes_exactly(tmp_path, uninterrupted, where, step):
    """SIGTERM inside an accumulation window (or in the middle of a validation): the process finishes the batch
    (or abandons the validation), saves checkpoints/preempted.ckpt, exits with a message; ckpt_path="last"
    continues to bitwise the uninterrupted weights."""
    err = _run(tmp_path, "--signal-at", str(step), "--signal-in", where, expect=1)
    path = tmp_path / "checkpoints" / "preempted.ckpt"
    assert "Received SIGTERM" in err and str(path) in err and "ckpt_path='last'" in err
    assert not (tmp_path / "final.pt").exists()
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["fulmen"]["position"]["phase"] == ("batch_end_done" if where == "train" else "batch_end")
    _run(tmp_path, "--resume")
    _assert_same_weights(uninterrupted, tmp_path)


def test_sigterm_from_outside_at_a_random_moment(tmp_path, uninterrupted):
    proc = _start(tmp_path, env={"SCENARIO_SLEEP": "0.03"})
    deadline = time.monotonic() + 120
    while not (tmp_path / "started").exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(float(torch.rand((), generator=torch.Generator().manual_seed(5))) * 0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "Received SIGTERM" in err, err[-3000:]
    _run(tmp_path, "--resume")
    _assert_same_weights(uninterrupted, tmp_path)


def test_sigusr1_under_slurm_saves_an_hpc_checkpoint_and_requeues(tmp_path, uninterrupted):
    """SLURM is not here: a stand-in `scontrol` on PATH records how it was called."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path / 'scontrol.args'}\n")
    scontrol.chmod(0o755)
    env = {"SLURM_NTASKS": "1", "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "train",
           "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    err = _run(tmp_path, "--signal-at", "6", "--signal", "SIGUSR1", env=env, expect=1)
    assert "Received SIGUSR1" in err and "hpc_ckpt_1.ckpt" in err
    assert (tmp_path / "scontrol.args").read_text().split() == ["requeue", "4242"]
    _run(tmp_path, env=env)  # the requeued job: ckpt_path=None finds hpc_ckpt_1.ckpt under SLURM
    _assert_same_weights(uninterrupted, tmp_path)


# ---------------------------------------------------------------------------------------------- in-process
class SignalSelf(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def test_on_exception_callbacks_see_the_same_exact_position(tmp_path):
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        trainer = L.Trainer(max_epochs=2, limit_train_batches=4, limit_val_batches=1, logger=False,
                            enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                            callbacks=[SignalSelf(3), OnExceptionCheckpoint(tmp_path)])
        with pytest.raises(SIGTERMException, match="global step 3"):
            trainer.fit(BoringModel())
        assert seen == [signal.SIGTERM]  # the handler that was there is chained
        assert trainer.received_sigterm and trainer.state.status == "interrupted"
        assert signal.getsignal(signal.SIGTERM) is not previous and callable(signal.getsignal(signal.SIGTERM))
        for name in ("checkpoints/preempted.ckpt", "on_exception.ckpt"):
            position = io.load(tmp_path / name)["fulmen"]["position"]
            assert (position["phase"], position["batches_done"], position["global_step"]) == ("batch_end_done", 3, 3)
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_handlers_are_put_back_after_each_run():
    before = signal.getsignal(signal.SIGTERM)
    trainer = L.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(BoringModel())
    assert signal.getsignal(signal.SIGTERM) is before and not trainer.received_sigterm


class SignalInStep(BoringModel):
    def validation_step(self, batch, batch_idx):
        if batch_idx == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return super().validation_step(batch, batch_idx)

    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        if batch_idx == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return super().predict_step(batch, batch_idx)


@pytest.mark.parametrize("method", ["validate", "predict"])
def test_sigterm_stops_evaluation_after_the_batch_without_a_checkpoint(tmp_path, method):
    batches = []

    class Count(Callback):
        def on_validation_batch_end(self, *args):
            batches.append(args[4])

        def on_predict_batch_end(self, *args):
            batches.append(args[4])

    trainer = L.Trainer(limit_val_batches=5, limit_predict_batches=5, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path, callbacks=[Count()])
    with pytest.raises(SIGTERMException, match=f"during {method}"):
        getattr(trainer, method)(SignalInStep())
    assert batches == [0, 1] and not (tmp_path / "checkpoints").exists()

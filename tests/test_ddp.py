"""DDP with real processes on the CPU (gloo), started by fulmen's launcher from a plain `python script.py`: the same
weights as one process with the whole batch, one set of files, and a failing or killed rank ending the run with an
error that names it, leaving no process behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCENARIO = os.path.join(ROOT, "tests", "ddp_scenario.py")


def clean_env(**extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    for name in list(env):
        if name.startswith("SLURM_") or name in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                                                 "NODE_RANK", "GROUP_RANK", "LOCAL_WORLD_SIZE"):
            del env[name]
    return {**env, **extra}


def run(folder, *args, timeout=600):
    return subprocess.run([sys.executable, SCENARIO, str(folder), *map(str, args)], env=clean_env(),
                          capture_output=True, text=True, timeout=timeout)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    folder = tmp_path_factory.mktemp("one")
    proc = run(folder, "--devices", 1, "--batch", 16)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(folder / "result.pt", weights_only=True)


def test_two_processes_with_half_batches_match_one_process(tmp_path, one_process):
    proc = run(tmp_path, "--devices", 2, "--batch", 8)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = torch.load(tmp_path / "result.pt", weights_only=True)
    torch.testing.assert_close(result["weights"], one_process["weights"], rtol=0, atol=1e-6)
    assert result["metrics"] == pytest.approx(one_process["metrics"], abs=1e-6)  # sync_dist means over all ranks
    assert (tmp_path / "prepared.txt").read_text() == "0\n"  # prepare_data ran once on the node
    ranks = sorted((tmp_path / "ranks.txt").read_text().splitlines())
    assert ranks == ["0 2 12 0 0", "1 2 12 0 1"]  # global rank, world size, steps, node rank, local rank
    logs = tmp_path / "lightning_logs"
    assert [p.name for p in logs.iterdir()] == ["version_0"]  # one version, written by rank 0 only
    assert len(list((logs / "version_0").glob("events.out.tfevents.*"))) == 1
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["epoch=2-step=12.ckpt"]
    assert "Initializing distributed: GLOBAL_RANK: 0, MEMBER: 1/2" in proc.stderr + proc.stdout
    frames = (tmp_path / "frames-1.txt").read_text().splitlines()
    assert len(frames) <= 6, frames  # the hot path with DDP: at most six fulmen frames (DESIGN.md)


@pytest.mark.parametrize("how, words", [
    ("--fail-rank", r"rank 1 \(pid (\d+)\) exited with code 1 during Trainer.fit"),
    ("--kill-rank", r"rank 1 \(pid (\d+)\) exited with code -9 \(SIGKILL\) during Trainer.fit"),
])
def test_a_rank_that_fails_stops_the_run_and_is_named(tmp_path, how, words):
    proc = run(tmp_path, "--devices", 2, "--batch", 8, how, 1, "--fail-at", 5, timeout=600)
    assert proc.returncode != 0
    match = re.search(words, proc.stderr)
    assert match, proc.stderr[-3000:]
    assert gone(int(match.group(1)))
    assert not (tmp_path / "result.pt").exists()


def test_when_rank_zero_fails_the_others_are_ended(tmp_path):
    proc = run(tmp_path, "--devices", 2, "--batch", 8, "--fail-rank", 0, "--fail-at", 5, timeout=600)
    assert proc.returncode != 0 and "ValueError: a bug in rank 0" in proc.stderr
    assert not (tmp_path / "ranks.txt").exists()  # rank 1 did not run on past the failure
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(tmp_path) not in out  # no process of this run is left


@pytest.mark.parametrize("stage", ["validate", "test", "predict"])
def test_sigterm_on_one_rank_during_evaluation_stops_every_rank(tmp_path, stage):
    """SIGTERM reaches rank 1 only, at its batch 21 of about 50 (predict's shares differ by one): both ranks stop
    at a batch they agree on, with the message, and none runs to the end."""
    proc = run(tmp_path, "--devices", 2, "--batch", 1, "--eval-samples", 101, "--stage", stage, "--signal-rank", 1,
               "--fail-at", 21, timeout=600)
    assert proc.returncode != 0
    assert f"Received SIGTERM during {stage}" in proc.stderr, proc.stderr[-3000:]
    assert not (tmp_path / "ranks.txt").exists()  # no rank finished its run


@pytest.mark.parametrize("stage", ["validate", "predict"])
def test_evaluation_with_several_processes_and_no_signal_runs_to_the_end(tmp_path, stage):
    proc = run(tmp_path, "--devices", 2, "--batch", 1, "--eval-samples", 101, "--stage", stage, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted((tmp_path / "ranks.txt").read_text().split("\n")[:2]) == [f"0 {stage} done", f"1 {stage} done"]


NOISY = ("--devices", 2, "--batch", 4, "--samples", 512, "--noisy", "--accumulate", 3)


def test_sigterm_on_one_rank_stops_every_rank_together_and_resumes_exactly(tmp_path):
    """SIGTERM reaches rank 1 only, inside an accumulation window; the ranks agree on it (without a collective in
    every step) and all save and stop at the same batch; the resumed run ends with the weights of one never
    stopped, bit for bit, though each rank draws its own dropout masks and holds its own unreduced gradients."""
    full = tmp_path / "full"
    full.mkdir()
    assert run(full, *NOISY).returncode == 0
    stopped = run(tmp_path, *NOISY, "--signal-rank", 1, "--fail-at", 2, timeout=600)
    assert stopped.returncode == 1
    assert stopped.stderr.count("Received SIGTERM at epoch 0, global step 10; saved checkpoint") == 2  # both ranks
    record = torch.load(tmp_path / "checkpoints" / "preempted.ckpt", weights_only=True)["fulmen"]
    assert record["position"]["batches_done"] == 32 and len(record["per_rank"]) == 2
    first, second = (ranked["grads"]["net.0.weight"] for ranked in record["per_rank"])
    assert not torch.equal(first, second)
    resumed = run(tmp_path, *NOISY, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected = torch.load(full / "result.pt", weights_only=True)
    got = torch.load(tmp_path / "result.pt", weights_only=True)
    for name, value in expected["weights"].items():
        assert torch.equal(value, got["weights"][name]), name
    assert got["metrics"] == expected["metrics"]


def two_nodes(tmp_path, commands):
    """Run the two "nodes" (each command, env pair) at once on this machine and wait for both."""
    procs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for command, env in commands]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs[0][-2000:] + outputs[1][-2000:]
    return sorted((tmp_path / "ranks.txt").read_text().splitlines())


def test_two_nodes_under_torchrun(tmp_path, one_process):
    """`torchrun --nnodes 2 --nproc-per-node 1` twice on 127.0.0.1, with Trainer(devices=1, num_nodes=2)."""
    from fulmen.plugins.environments import free_port

    port = free_port()
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    commands = [([torchrun, "--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(node), "--master-addr",
                  "127.0.0.1", "--master-port", str(port), SCENARIO, str(tmp_path), "--devices", "1",
                  "--num-nodes", "2", "--batch", "8"], clean_env()) for node in (0, 1)]
    assert two_nodes(tmp_path, commands) == ["0 2 12 0 0", "1 2 12 1 0"]
    assert (tmp_path / "prepared.txt").read_text() == "0\n0\n"  # once per node: local rank 0 of each
    result = torch.load(tmp_path / "result.pt", weights_only=True)
    torch.testing.assert_close(result["weights"], one_process["weights"], rtol=0, atol=1e-6)


def test_two_nodes_under_slurm(tmp_path, one_process):
    """What `srun` sets for a 2-node job with one task per node, faked: each process joins, none is started."""
    from fulmen.plugins.environments import free_port

    common = dict(SLURM_NTASKS="2", SLURM_NTASKS_PER_NODE="1", SLURM_JOB_ID="4242", SLURM_JOB_NAME="train",
                  SLURM_NODELIST="127.0.0.1", MASTER_PORT=str(free_port()))
    commands = [([sys.executable, SCENARIO, str(tmp_path), "--devices", "1", "--num-nodes", "2", "--batch", "8"],
                 clean_env(**common, SLURM_PROCID=str(node), SLURM_LOCALID="0", SLURM_NODEID=str(node)))
                for node in (0, 1)]
    assert two_nodes(tmp_path, commands) == ["0 2 12 0 0", "1 2 12 1 0"]
    result = torch.load(tmp_path / "result.pt", weights_only=True)
    torch.testing.assert_close(result["weights"], one_process["weights"], rtol=0, atol=1e-6)


def test_unused_parameters_get_an_error_that_names_the_fix(tmp_path):
    proc = run(tmp_path, "--devices", 2, "--unused", timeout=600)
    assert proc.returncode != 0
    assert "pass strategy='ddp_find_unused_parameters_true'" in proc.stderr, proc.stderr[-2000:]
    assert "spare.weight" in proc.stderr
    ok = run(tmp_path / "ok", "--devices", 2, "--unused", "--strategy", "ddp_find_unused_parameters_true")
    assert ok.returncode == 0, ok.stderr[-2000:]


@pytest.mark.parametrize("strategy", ["ddp_spawn", "ddp_fork"])
def test_spawned_processes_return_their_results(tmp_path, one_process, strategy):
    """The processes are started with torch.multiprocessing; this one waits, then holds rank 0's weights, metrics
    and checkpoint paths, as after a single-process fit."""
    proc = run(tmp_path, "--devices", 2, "--batch", 8, "--strategy", strategy)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = torch.load(tmp_path / "result.pt", weights_only=True)
    torch.testing.assert_close(result["weights"], one_process["weights"], rtol=0, atol=1e-6)
    assert result["metrics"] == pytest.approx(one_process["metrics"], abs=1e-6)
    assert result["best"].endswith("epoch=2-step=12.ckpt")
    assert (tmp_path / "ranks.txt").read_text() == "0 2 12 0 0\n"  # the main process reports once

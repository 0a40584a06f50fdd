"""Cluster environments read from their variables (torchrun, SLURM, LSF, Kubeflow, fulmen's launcher), and each process's share of
the data (the distributed samplers), without starting processes."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from fulmen.loops.fetchers import distributed_sampler, prepare_loader
from fulmen.strategies.ddp import DDPStrategy
from fulmen.plugins.environments import (KubeflowEnvironment, LightningEnvironment, LSFEnvironment,
                                         MPIEnvironment, SLURMEnvironment, TorchElasticEnvironment, detect,
                                         first_host)
from fulmen.utilities.exceptions import MisconfigurationException

TORCHRUN = {"RANK": "3", "GROUP_RANK": "1", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "WORLD_SIZE": "4",
            "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500", "TORCHELASTIC_RUN_ID": "x"}
SLURM = {"SLURM_NTASKS": "4", "SLURM_PROCID": "2", "SLURM_LOCALID": "0", "SLURM_NODEID": "1", "SLURM_JOB_ID": "12345",
         "SLURM_NODELIST": "gpu[017-018]", "SLURM_JOB_NAME": "train", "SLURM_NTASKS_PER_NODE": "2"}


def setenv(monkeypatch, values):
    for key, value in values.items():
        monkeypatch.setenv(key, value)


def test_lsf_reads_jsrun_and_the_rank_file(monkeypatch, tmp_path):
    import socket

    rankfile = tmp_path / "rankfile"
    me = socket.gethostname()
    rankfile.write_text(f"launch01\nbatch07\nbatch07\n{me}\n{me}\n")
    setenv(monkeypatch, {"LSB_JOBID": "54321", "LSB_DJOB_RANKFILE": str(rankfile), "JSM_NAMESPACE_RANK": "3",
                         "JSM_NAMESPACE_LOCAL_RANK": "1", "JSM_NAMESPACE_SIZE": "4"})
    for name in ("MASTER_ADDR", "MASTER_PORT"):  # the environment sets them: put them back as they were after
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    env = detect()
    assert isinstance(env, LSFEnvironment) and env.creates_processes_externally
    # The launch node (first line) runs no task: the main address is the first compute host.
    assert (env.main_address, env.main_port) == ("batch07", 10321)
    assert (env.global_rank(), env.local_rank(), env.node_rank(), env.world_size()) == (3, 1, 1, 4)
    import os

    assert os.environ["MASTER_ADDR"] == "batch07" and os.environ["MASTER_PORT"] == "10321"


def test_kubeflow_is_never_detected_but_reads_the_operator_variables(monkeypatch):
    setenv(monkeypatch, {"MASTER_ADDR": "job-master-0", "MASTER_PORT": "23456", "WORLD_SIZE": "3", "RANK": "2"})
    assert not KubeflowEnvironment.detect() and isinstance(detect(), LightningEnvironment)
    env = KubeflowEnvironment()
    assert (env.main_address, env.main_port, env.world_size()) == ("job-master-0", 23456, 3)
    assert (env.global_rank(), env.local_rank(), env.node_rank()) == (2, 0, 2)


def test_mpi_is_not_detected_outside_mpirun(monkeypatch):
    for name in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"):
        monkeypatch.delenv(name, raising=False)
    assert MPIEnvironment.detect() is False


def test_torchrun(monkeypatch):
    setenv(monkeypatch, TORCHRUN)
    env = detect()
    assert isinstance(env, TorchElasticEnvironment) and env.creates_processes_externally
    assert (env.global_rank(), env.local_rank(), env.node_rank(), env.world_size()) == (3, 1, 1, 4)
    assert (env.main_address, env.main_port) == ("10.0.0.1", 29500)
    env.validate_settings(num_devices=2, num_nodes=2)
    with pytest.raises(ValueError, match=r"--nproc-per-node\), but Trainer\(devices=4\); pass devices=2"):
        env.validate_settings(num_devices=4, num_nodes=1)
    with pytest.raises(ValueError, match="pass num_nodes=2 or change --nnodes"):
        env.validate_settings(num_devices=2, num_nodes=1)


def test_slurm(monkeypatch):
    setenv(monkeypatch, SLURM)
    env = detect()
    assert isinstance(env, SLURMEnvironment)
    assert (env.global_rank(), env.local_rank(), env.node_rank(), env.world_size()) == (2, 0, 1, 4)
    assert env.main_address == "gpu017" and env.main_port == 12345
    env.validate_settings(num_devices=2, num_nodes=2)
    with pytest.raises(ValueError, match="--ntasks-per-node"):
        env.validate_settings(num_devices=4, num_nodes=1)
    monkeypatch.setenv("SLURM_JOB_NAME", "bash")  # an interactive shell in an allocation is not a job step
    assert isinstance(detect(), LightningEnvironment)


@pytest.mark.parametrize("nodelist, host", [("node[003-005,010],gpu7", "node003"), ("gpu7,gpu8", "gpu7"),
                                            ("host", "host"), ("a-b[1,4]", "a-b1")])
def test_first_host_of_a_slurm_node_list(nodelist, host):
    assert first_host(nodelist) == host


def test_fulmens_own_variables(monkeypatch):
    env = detect()
    assert isinstance(env, LightningEnvironment) and not env.creates_processes_externally
    setenv(monkeypatch, {"LOCAL_RANK": "1", "NODE_RANK": "1", "WORLD_SIZE": "4", "MASTER_PORT": "1234"})
    assert env.creates_processes_externally and env.main_port == 1234
    strategy = DDPStrategy()
    strategy.configure("cpu", [0, 1], num_nodes=2)
    assert (strategy.global_rank, strategy.local_rank, strategy.node_rank, strategy.world_size) == (3, 1, 1, 4)
    with pytest.raises(ValueError, match=r"WORLD_SIZE=4 in the environment, but Trainer\(devices=2, num_nodes=1\)"):
        DDPStrategy().configure("cpu", [0, 1], num_nodes=1)


def test_ddp_start_methods(monkeypatch):
    with pytest.raises(ValueError, match="start_method='thread'"):
        DDPStrategy(start_method="thread")
    setenv(monkeypatch, TORCHRUN)
    with pytest.raises(MisconfigurationException, match="start_method='spawn'\\) starts its own processes.*torchrun"):
        DDPStrategy(start_method="spawn").configure("cpu", [0, 1], num_nodes=2)


def shares(loader, train, predicting=False, world=2):
    return [list(distributed_sampler(loader, world, rank, train, predicting)) for rank in range(world)]


def test_each_process_gets_its_share():
    data = list(range(10))
    ordered = DataLoader(data, batch_size=2)
    # Training shares are always shuffled (seeded by the global seed), as Lightning shuffles them.
    first, second = shares(ordered, train=True)
    assert sorted(first + second) == data and first != [0, 2, 4, 6, 8]
    assert shares(ordered, train=True) == [first, second]  # the same seed and epoch: the same shares
    assert shares(ordered, train=False, world=3) == [[0, 3, 6, 9], [1, 4, 7, 0], [2, 5, 8, 1]]  # padded
    assert shares(ordered, train=False, predicting=True, world=3) == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    shuffled = DataLoader(data, batch_size=2, shuffle=True)
    assert shares(shuffled, train=False) == [first, second]  # evaluation follows the loader: shuffled here
    custom = DataLoader(data, sampler=[9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
    assert shares(custom, train=False) == [[9, 7, 5, 3, 1], [8, 6, 4, 2, 0]]  # a sampler of one's own: its order
    mixed = shares(custom, train=True)
    assert sorted(mixed[0] + mixed[1]) == data and mixed != [[9, 7, 5, 3, 1], [8, 6, 4, 2, 0]]


def test_prepare_loader_swaps_the_sampler_and_keeps_the_rest():
    loader = DataLoader(torch.arange(10), batch_size=3, drop_last=True, shuffle=True)
    split = prepare_loader(loader, 1, distributed={"num_replicas": 2, "rank": 1, "train": True})
    assert isinstance(split.sampler, DistributedSampler) and split.sampler.shuffle and split.sampler.rank == 1
    assert split.batch_size == 3 and split.drop_last and len(split) == 1

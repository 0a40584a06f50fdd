"""Cluster environments: where a process of a multi-process run learns its ranks, the world size and the address
of rank zero. fulmen's own launcher, torchrun (TorchElastic), SLURM, LSF (jsrun) and MPI each tell it their way; each
class reads one kind, and ``detect`` picks the one that applies. Kubeflow's PyTorchJob is never detected: pass
``Trainer(plugins=[KubeflowEnvironment()])``.
"""

from __future__ import annotations

import os
import re
import socket
from typing import Optional
from typing_extensions import override

from fulmen.utilities.rank_zero import rank_zero_warn


class ClusterEnvironment:
    """The ranks and rendezvous address of this process. ``creates_processes_externally`` says whether the
    processes already exist (torchrun, SLURM) or fulmen's launcher must start them."""

    @property
    def creates_processes_externally(self) -> bool:
        raise NotImplementedError

    @property
    def main_address(self) -> str:
        raise NotImplementedError

    @property
    def main_port(self) -> int:
        raise NotImplementedError

    @staticmethod
    def detect() -> bool:
        """Whether this process runs under this kind of cluster."""
        raise NotImplementedError

    def world_size(self) -> int:
        raise NotImplementedError

    def set_world_size(self, size: int) -> None:
        """Told by the strategy (devices x nodes) when the environment does not say it itself."""

    def global_rank(self) -> int:
        raise NotImplementedError

    def set_global_rank(self, rank: int) -> None:
        """Told by the strategy when the environment does not say it itself."""

    def local_rank(self) -> int:
        raise NotImplementedError

    def node_rank(self) -> int:
        raise NotImplementedError

    def validate_settings(self, num_devices: int, num_nodes: int) -> None:
        """Raise when the Trainer's devices and num_nodes disagree with what the environment started."""

    def teardown(self) -> None:
        """Undo what the environment set (fulmen's launcher variables)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _int_env(*names: str, default: int = 0) -> int:
    for name in names:
        if name in os.environ:
            return int(os.environ[name])
    return default


def free_port() -> int:
    """A TCP port nothing listens on now (for rank zero's rendezvous on this machine)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LightningEnvironment(ClusterEnvironment):
    """fulmen's launcher, or a plain environment: MASTER_ADDR, MASTER_PORT, WORLD_SIZE, NODE_RANK, LOCAL_RANK (and
    RANK). With LOCAL_RANK set the processes exist already; without it, this is the main process, and the
    launcher starts the others with these variables set."""

    def __init__(self) -> None:
        self._main_port = -1
        self._global_rank = 0
        self._world_size = 1

    @property
    @override
    def creates_processes_externally(self) -> bool:
        return "LOCAL_RANK" in os.environ

    @property
    @override
    def main_address(self) -> str:
        return os.environ.get("MASTER_ADDR", "127.0.0.1")

    @property
    @override
    def main_port(self) -> int:
        if self._main_port == -1:
            self._main_port = int(os.environ["MASTER_PORT"]) if "MASTER_PORT" in os.environ else free_port()
        return self._main_port

    @staticmethod
    @override
    def detect() -> bool:
        return True

    @override
    def world_size(self) -> int:
        return self._world_size

    @override
    def set_world_size(self, size: int) -> None:
        self._world_size = size

    @override
    def global_rank(self) -> int:
        return self._global_rank

    @override
    def set_global_rank(self, rank: int) -> None:
        self._global_rank = rank

    @override
    def local_rank(self) -> int:
        return _int_env("LOCAL_RANK")

    @override
    def node_rank(self) -> int:
        return _int_env("NODE_RANK", "GROUP_RANK")

    @override
    def validate_settings(self, num_devices: int, num_nodes: int) -> None:
        if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) != num_devices * num_nodes:
            raise ValueError(
                f"WORLD_SIZE={os.environ['WORLD_SIZE']} in the environment, but Trainer(devices={num_devices}, "
                f"num_nodes={num_nodes}) makes {num_devices * num_nodes} processes; make them agree")

    @override
    def teardown(self) -> None:
        if "WORLD_SIZE" in os.environ and not self.creates_processes_externally:
            del os.environ["WORLD_SIZE"]


class _StartedWithMasterVariables(ClusterEnvironment):
    """Processes started by a launcher that sets MASTER_ADDR, MASTER_PORT, WORLD_SIZE and RANK in each."""

    @property
    @override
    def creates_processes_externally(self) -> bool:
        return True

    @property
    @override
    def main_address(self) -> str:
        return os.environ["MASTER_ADDR"]

    @property
    @override
    def main_port(self) -> int:
        return int(os.environ["MASTER_PORT"])

    @override
    def world_size(self) -> int:
        return int(os.environ["WORLD_SIZE"])

    @override
    def global_rank(self) -> int:
        return int(os.environ["RANK"])


class TorchElasticEnvironment(_StartedWithMasterVariables):
    """torchrun: RANK, LOCAL_RANK, WORLD_SIZE, GROUP_RANK, MASTER_ADDR, MASTER_PORT set for every process."""

    @staticmethod
    @override
    def detect() -> bool:
        return all(name in os.environ for name in ("RANK", "GROUP_RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"))

    @override
    def set_world_size(self, size: int) -> None:
        if size != self.world_size():
            rank_zero_warn(f"torchrun started {self.world_size()} processes, but the Trainer asks for {size}; "
                           "torchrun's number is used")

    @override
    def local_rank(self) -> int:
        return int(os.environ["LOCAL_RANK"])

    @override
    def node_rank(self) -> int:
        return int(os.environ["GROUP_RANK"])

    @override
    def validate_settings(self, num_devices: int, num_nodes: int) -> None:
        per_node = int(os.environ["LOCAL_WORLD_SIZE"])
        if per_node != num_devices:
            raise ValueError(f"torchrun runs {per_node} processes per node (--nproc-per-node), but "
                             f"Trainer(devices={num_devices}); pass devices={per_node} or change --nproc-per-node")
        if self.world_size() != per_node * num_nodes:
            raise ValueError(f"torchrun runs {self.world_size()} processes in all, but Trainer(devices={num_devices}, "
                             f"num_nodes={num_nodes}) makes {num_devices * num_nodes}; pass "
                             f"num_nodes={self.world_size() // per_node} or change --nnodes")


class SLURMEnvironment(ClusterEnvironment):
    """A SLURM job step (srun): SLURM_PROCID, SLURM_LOCALID, SLURM_NODEID, SLURM_NTASKS, SLURM_NODELIST. The main
    address is the first node of the job; the port derives from the job id (or MASTER_PORT). ``auto_requeue``
    makes SIGUSR1 save and requeue the job (see fulmen/checkpoint/preemption.py)."""

    def __init__(self, auto_requeue: bool = True, requeue_signal: Optional[int] = None) -> None:
        import signal

        self.auto_requeue = auto_requeue
        self.requeue_signal = requeue_signal if requeue_signal is not None else signal.SIGUSR1

    @property
    @override
    def creates_processes_externally(self) -> bool:
        return True

    @property
    @override
    def main_address(self) -> str:
        if "MASTER_ADDR" in os.environ:
            return os.environ["MASTER_ADDR"]
        return first_host(os.environ.get("SLURM_NODELIST", "127.0.0.1"))

    @property
    @override
    def main_port(self) -> int:
        if "MASTER_PORT" in os.environ:
            return int(os.environ["MASTER_PORT"])
        job = os.environ.get("SLURM_JOB_ID", "0")
        return 10000 + int(job[-4:]) % 10000  # the same on every node of the job, rarely taken

    @staticmethod
    @override
    def detect() -> bool:
        # An interactive shell inside an allocation (salloc, srun --pty bash) is not a job step of the run.
        return "SLURM_NTASKS" in os.environ and os.environ.get("SLURM_JOB_NAME") not in ("bash", "interactive")

    @override
    def world_size(self) -> int:
        return int(os.environ["SLURM_NTASKS"])

    @override
    def global_rank(self) -> int:
        return int(os.environ["SLURM_PROCID"])

    @override
    def local_rank(self) -> int:
        return int(os.environ["SLURM_LOCALID"])

    @override
    def node_rank(self) -> int:
        return int(os.environ["SLURM_NODEID"])

    @override
    def validate_settings(self, num_devices: int, num_nodes: int) -> None:
        tasks = os.environ.get("SLURM_NTASKS_PER_NODE")
        if tasks is not None and tasks.split("(")[0].isdigit() and int(tasks.split("(")[0]) != num_devices:
            raise ValueError(f"SLURM runs {tasks} tasks per node (--ntasks-per-node), but Trainer(devices="
                             f"{num_devices}); make them agree")
        if self.world_size() != num_devices * num_nodes:
            raise ValueError(f"SLURM runs {self.world_size()} tasks (--ntasks), but Trainer(devices={num_devices}, "
                             f"num_nodes={num_nodes}) makes {num_devices * num_nodes} processes; make them agree")


class LSFEnvironment(ClusterEnvironment):
    """IBM Spectrum LSF, processes started by ``jsrun``: JSM_NAMESPACE_RANK, JSM_NAMESPACE_LOCAL_RANK,
    JSM_NAMESPACE_SIZE, and the job's hosts in the rank file LSB_DJOB_RANKFILE (its first line is the launch node,
    which runs no task). The main address is the first compute host; the port derives from LSB_JOBID (or
    MASTER_PORT)."""

    def __init__(self) -> None:
        self._hosts = self._read_hosts()
        os.environ["MASTER_ADDR"] = self.main_address
        os.environ["MASTER_PORT"] = str(self.main_port)

    @staticmethod
    def _read_hosts() -> list[str]:
        rankfile = os.environ.get("LSB_DJOB_RANKFILE")
        if not rankfile:
            raise ValueError("LSFEnvironment reads the job's hosts from $LSB_DJOB_RANKFILE, which is not set; run "
                             "the processes with jsrun")
        with open(rankfile) as f:
            return [line.strip() for line in f if line.strip()][1:]

    @property
    @override
    def creates_processes_externally(self) -> bool:
        return True

    @property
    @override
    def main_address(self) -> str:
        return self._hosts[0]

    @property
    @override
    def main_port(self) -> int:
        if "MASTER_PORT" in os.environ:
            return int(os.environ["MASTER_PORT"])
        return 10000 + int(os.environ["LSB_JOBID"]) % 1000  # the same on every host of the job

    @staticmethod
    @override
    def detect() -> bool:
        return all(name in os.environ for name in ("LSB_JOBID", "LSB_DJOB_RANKFILE", "JSM_NAMESPACE_LOCAL_RANK",
                                                   "JSM_NAMESPACE_SIZE"))

    @override
    def world_size(self) -> int:
        return int(os.environ["JSM_NAMESPACE_SIZE"])

    @override
    def global_rank(self) -> int:
        return int(os.environ["JSM_NAMESPACE_RANK"])

    @override
    def local_rank(self) -> int:
        return int(os.environ["JSM_NAMESPACE_LOCAL_RANK"])

    @override
    def node_rank(self) -> int:
        """This host's place among the job's distinct hosts, in the order of the rank file."""
        return list(dict.fromkeys(self._hosts)).index(socket.gethostname())


class MPIEnvironment(ClusterEnvironment):
    """Processes started by ``mpirun`` (through ``mpi4py``): ranks and world size from MPI's world communicator, the
    local rank among the processes of this host, and rank zero's host and a free port of it, shared by MPI."""

    def __init__(self) -> None:
        try:
            from mpi4py import MPI
        except ImportError as err:
            raise ModuleNotFoundError("MPIEnvironment reads the ranks through mpi4py: pip install mpi4py") from err
        self._comm = MPI.COMM_WORLD
        self._node = self._comm.Split_type(MPI.COMM_TYPE_SHARED)  # the processes of this host
        hosts = self._comm.allgather(socket.gethostname())
        self._node_rank = list(dict.fromkeys(hosts)).index(socket.gethostname())
        self._main_address, self._main_port = self._comm.bcast(
            (socket.gethostname(), free_port()) if self._comm.Get_rank() == 0 else None, root=0)

    @property
    @override
    def creates_processes_externally(self) -> bool:
        return True

    @property
    @override
    def main_address(self) -> str:
        return self._main_address

    @property
    @override
    def main_port(self) -> int:
        return self._main_port

    @staticmethod
    @override
    def detect() -> bool:
        """Under mpirun with more than one process (mpi4py installed)."""
        import importlib.util

        if importlib.util.find_spec("mpi4py") is None:
            return False
        if not any(name in os.environ for name in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")):
            return False  # not started by an MPI launcher: importing mpi4py would only start a world of one
        from mpi4py import MPI

        return MPI.COMM_WORLD.Get_size() > 1

    @override
    def world_size(self) -> int:
        return self._comm.Get_size()

    @override
    def global_rank(self) -> int:
        return self._comm.Get_rank()

    @override
    def local_rank(self) -> int:
        return self._node.Get_rank()

    @override
    def node_rank(self) -> int:
        return self._node_rank


class KubeflowEnvironment(_StartedWithMasterVariables):
    """A Kubeflow PyTorchJob: one process per pod, MASTER_ADDR, MASTER_PORT, WORLD_SIZE and RANK set by the
    operator. Never detected (the same variables mean other things elsewhere): pass it in ``plugins``."""

    @staticmethod
    @override
    def detect() -> bool:
        return False

    @override
    def local_rank(self) -> int:
        return 0

    @override
    def node_rank(self) -> int:
        return self.global_rank()


class XLAEnvironment(ClusterEnvironment):
    """The processes of torch_xla's runtime (one per XLA device): ranks and world size from ``torch_xla.runtime``.
    fulmen trains on one XLA device; this reports the runtime's view for code that asks."""

    @property
    @override
    def creates_processes_externally(self) -> bool:
        return False

    @property
    @override
    def main_address(self) -> str:
        return os.environ.get("MASTER_ADDR", "127.0.0.1")

    @property
    @override
    def main_port(self) -> int:
        return int(os.environ.get("MASTER_PORT", "12355"))

    @staticmethod
    @override
    def detect() -> bool:
        from fulmen.accelerators import devices

        return devices.xla_available() and devices.xla_device_type() == "TPU"

    @override
    def world_size(self) -> int:
        import torch_xla.runtime as xr

        return xr.world_size()

    @override
    def global_rank(self) -> int:
        import torch_xla.runtime as xr

        return xr.global_ordinal()

    @override
    def local_rank(self) -> int:
        import torch_xla.runtime as xr

        return xr.local_ordinal()

    @override
    def node_rank(self) -> int:
        import torch_xla.runtime as xr

        return xr.global_ordinal() // max(1, xr.addressable_runtime_device_count())


def first_host(nodelist: str) -> str:
    """The first host name of a SLURM node list: 'node[003-005,010],gpu7' -> 'node003'."""
    head = re.split(r",(?![^\[]*\])", nodelist.strip())[0]
    match = re.match(r"([^\[]*)\[([^\]]*)\]", head)
    if not match:
        return head
    prefix, ranges = match.groups()
    return prefix + ranges.split(",")[0].split("-")[0]


def detect() -> ClusterEnvironment:
    """The environment this process runs in: torchrun, then SLURM, LSF, MPI, then fulmen's own (or a plain one)."""
    for cls in (TorchElasticEnvironment, SLURMEnvironment, LSFEnvironment, MPIEnvironment):
        if cls.detect():
            return cls()
    return LightningEnvironment()

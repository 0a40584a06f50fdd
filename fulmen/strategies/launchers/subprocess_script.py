"""``SubprocessLauncher`` (strategy "ddp"): the process the user started becomes local rank 0 and starts the others by
running the same command again, with LOCAL_RANK, NODE_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT set, as
torchrun would. Under torchrun or SLURM the processes exist already and nothing is started.

The started processes die with the one that started them (Linux: PR_SET_PDEATHSIG), and when a run fails the
launcher ends them and says which rank died first, so no process is left behind and the error names the rank.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import subprocess
import sys
import time
from typing import Any, Callable, Optional
from typing_extensions import override

from fulmen.plugins.environments import ClusterEnvironment
from fulmen.strategies.launchers.launcher import _Launcher


def _command() -> list[str]:
    """The command line that started this process, to run again for the other ranks."""
    from fulmen.utilities import aliases

    script = sys.argv[0]
    if aliases.active():  # under `fulmen run`: the other processes map Lightning's names too
        return aliases.relaunch_command([os.path.abspath(script), *sys.argv[1:]])
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name not in ("__main__", None):  # python -m package.module ...
        name = spec.name[: -len(".__main__")] if spec.name.endswith(".__main__") else spec.name
        return [sys.executable, "-m", name, *sys.argv[1:]]
    if not script or script == "-c" or not os.path.exists(script):
        raise RuntimeError(
            "strategy='ddp' starts the other processes by running this program's command again, but this process "
            f"was not started from a script ({sys.argv[0]!r}); run a script, use strategy='ddp_spawn', or start the "
            "processes with torchrun")
    return [sys.executable, os.path.abspath(script), *sys.argv[1:]]


def _die_with_parent() -> None:
    # Runs in the child before exec: the kernel sends it SIGKILL when the parent (rank 0) dies, however it dies.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class SubprocessLauncher(_Launcher):
    """Start local ranks 1..n-1 as copies of this command; this process is local rank 0."""

    def __init__(self, environment: ClusterEnvironment, num_processes: int, num_nodes: int) -> None:
        self.environment = environment
        self.num_processes = num_processes
        self.num_nodes = num_nodes
        self.procs: list[subprocess.Popen] = []

    @property
    @override
    def is_interactive_compatible(self) -> bool:
        return False

    @override
    def launch(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self.environment.creates_processes_externally:
            self._start_others()
        return function(*args, **kwargs)

    def _start_others(self) -> None:
        env = self.environment
        os.environ["MASTER_ADDR"] = env.main_address
        os.environ["MASTER_PORT"] = str(env.main_port)
        os.environ["NODE_RANK"] = str(env.node_rank())
        os.environ["WORLD_SIZE"] = str(self.num_processes * self.num_nodes)
        command = _command()
        atexit.register(self._wait_for_others)
        for local_rank in range(1, self.num_processes):
            child_env = dict(os.environ, LOCAL_RANK=str(local_rank))
            self.procs.append(subprocess.Popen(command, env=child_env, cwd=os.getcwd(),
                                               preexec_fn=_die_with_parent if sys.platform == "linux" else None))

    @override
    def dead_rank(self) -> Optional[str]:
        """'rank 1 (pid 123) exited with code -9 (SIGKILL)' for the first started process that ended badly."""
        for local_rank, proc in enumerate(self.procs, start=1):
            code = proc.poll()
            if code not in (None, 0):
                rank = self.environment.node_rank() * self.num_processes + local_rank
                name = f" ({signal.Signals(-code).name})" if code < 0 and -code in signal.valid_signals() else ""
                return f"rank {rank} (pid {proc.pid}) exited with code {code}{name}"
        return None

    @override
    def kill(self, signum: int = signal.SIGTERM) -> None:
        """End the started processes (after a failure of this one), waiting briefly, then killing what is left."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signum)
        self.wait(timeout=10.0)

    def wait(self, timeout: float) -> None:
        """Give the started processes ``timeout`` seconds to end by themselves, then kill what is left."""
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _wait_for_others(self) -> None:
        # At exit of this process: the others run the rest of the same script (a test after the fit, say) and must
        # not be killed by this one's death while they finish.
        for proc in self.procs:
            proc.wait()

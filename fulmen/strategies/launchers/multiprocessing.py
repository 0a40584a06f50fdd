"""``SpawnLauncher`` (strategies "ddp_spawn", "ddp_fork", "ddp_notebook"): the ranks as torch.multiprocessing
processes of this one."""

from __future__ import annotations

import os
import signal
from typing import Any, Callable, Optional
from typing_extensions import override

from fulmen.plugins.environments import ClusterEnvironment
from fulmen.strategies.launchers.launcher import _Launcher


class SpawnLauncher(_Launcher):
    """Strategies "ddp_spawn", "ddp_fork", "ddp_notebook": this process starts every rank with torch.multiprocessing
    (``start_method`` "spawn", "fork" or "forkserver"), waits for them, and takes rank 0's results back: the
    return value, the weights, the metrics and the checkpoint paths (``Trainer._spawn`` applies them)."""

    def __init__(self, environment: ClusterEnvironment, num_processes: int, num_nodes: int,
                 start_method: str) -> None:
        self.environment = environment
        self.num_processes = num_processes
        self.num_nodes = num_nodes
        self.start_method = start_method
        self.procs: list[Any] = []  # (the popen launcher's; none here: the workers are joined before returning)

    @property
    @override
    def is_interactive_compatible(self) -> bool:
        return self.start_method == "fork"

    @override
    def launch(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run ``function(local_rank, *args, results)`` in each new process; return what rank 0 put in results."""
        import torch.multiprocessing as mp

        env = self.environment
        os.environ["MASTER_ADDR"] = env.main_address
        os.environ["MASTER_PORT"] = str(env.main_port)
        os.environ["NODE_RANK"] = str(env.node_rank())
        os.environ["WORLD_SIZE"] = str(self.num_processes * self.num_nodes)
        results = mp.get_context(self.start_method).SimpleQueue()
        try:
            mp.start_processes(function, args=(*args, results), nprocs=self.num_processes,
                               start_method=self.start_method)
        finally:
            for name in ("MASTER_PORT", "WORLD_SIZE"):
                os.environ.pop(name, None)
        return results.get() if not results.empty() else None

    @override
    def dead_rank(self) -> Optional[str]:
        return None  # torch.multiprocessing names the failed rank itself

    @override
    def kill(self, signum: int = signal.SIGTERM) -> None:
        """Nothing to end: torch.multiprocessing ends the other workers when one fails."""

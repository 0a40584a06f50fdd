"""Starting the processes of a multi-process run on this machine: ``SubprocessLauncher`` runs the user's command
again for each rank (``subprocess_script.py``); ``SpawnLauncher`` starts them with torch.multiprocessing
(``multiprocessing.py``)."""

from fulmen.strategies.launchers.multiprocessing import SpawnLauncher
from fulmen.strategies.launchers.subprocess_script import SubprocessLauncher

__all__ = ["SpawnLauncher", "SubprocessLauncher"]

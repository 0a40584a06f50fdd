"""The main module of a process that multiprocessing starts by "spawn" (``strategy="ddp_spawn"``, DataLoader workers
where spawn is the default) under ``fulmen run``.

Such a process imports the parent's main module again before it unpickles anything. The parent's script imports
``lightning.pytorch``, so the mapping must be installed first: ``fulmen run`` names this module as the spec of the
script it runs, multiprocessing runs it in the child as ``__mp_main__``, and it installs the mapping and runs the
script (still as ``__mp_main__``, so its ``if __name__ == "__main__":`` part stays out), keeping the script's names
as its own so that what was pickled as ``__main__.X`` is found.
"""

import os
import runpy

from fulmen.utilities import aliases

if __name__ == "__mp_main__":
    aliases.install()
    _spec = __spec__
    globals().update(runpy.run_path(os.environ[aliases.SCRIPT_ENV], run_name="__mp_main__"))
    __spec__ = _spec  # the script's names came with its empty spec: keep this one for the processes it spawns

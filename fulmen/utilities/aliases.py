"""``fulmen run script.py ARGS...``: run an unchanged Lightning program on fulmen.

In this process (and the processes a multi-process run starts), ``lightning.pytorch.*`` and ``pytorch_lightning.*``
resolve to ``fulmen.*``: the program's ``import lightning.pytorch as L`` gives ``fulmen``, its
``from pytorch_lightning.callbacks import EarlyStopping`` fulmen's EarlyStopping, and the ``class_path`` strings of a
LightningCLI config find fulmen's classes. ``lightning.fabric`` (and anything else under ``lightning``) stays whatever
is installed. A module or name fulmen does not have fails with an error that names it.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import types
from collections.abc import Sequence
from typing import Any, Optional
from typing_extensions import override

# The prefixes mapped to fulmen, and the environment variable that tells a started process to map them too.
PREFIXES = ("lightning.pytorch", "pytorch_lightning")
ENV = "FULMEN_RUN_LIGHTNING"
SCRIPT_ENV = "FULMEN_RUN_SCRIPT"  # the script `fulmen run` runs, for the processes multiprocessing spawns


def _target(name: str) -> Optional[str]:
    """The fulmen module that stands for ``name``, or None when ``name`` is not under a mapped prefix."""
    for prefix in PREFIXES:
        if name == prefix or name.startswith(prefix + "."):
            return "fulmen" + name[len(prefix):]
    return None


class NotInFulmen(ModuleNotFoundError):
    """A Lightning module or name that fulmen does not have."""


class _Alias(importlib.abc.Loader):
    """Gives the fulmen module itself under the Lightning name (one module object, two names)."""

    def __init__(self, module: types.ModuleType) -> None:
        self.module = module

    @override
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return self.module

    def exec_module(self, module: types.ModuleType) -> None:
        """The fulmen module ran when it was imported under its own name."""


class LightningFinder(importlib.abc.MetaPathFinder):
    """Finds ``lightning.pytorch.*`` and ``pytorch_lightning.*`` as the fulmen modules of the same path; and, when no
    ``lightning`` package is installed, stands in for the ``lightning`` package itself (holding ``pytorch`` only)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname == "lightning":
            return None if self._real_lightning() else importlib.machinery.ModuleSpec(
                fullname, _Alias(self._package()), is_package=True)
        target_name = _target(fullname)
        if target_name is None:
            return None
        try:
            module = importlib.import_module(target_name)
        except ModuleNotFoundError as err:
            if err.name is not None and not err.name.startswith("fulmen"):
                raise  # an optional package fulmen's module needs (its message says which)
            raise NotInFulmen(f"{fullname} is not supported by fulmen yet (fulmen run maps it to {target_name}, "
                              "which does not exist); see docs/migration.md for what fulmen covers",
                              name=fullname) from None
        return importlib.machinery.ModuleSpec(fullname, _Alias(module), is_package=hasattr(module, "__path__"))

    def _real_lightning(self) -> bool:
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            if finder.find_spec("lightning", None) is not None:
                return True
        return False

    @staticmethod
    def _package() -> types.ModuleType:
        package = types.ModuleType("lightning", "Stands in for the lightning package under `fulmen run`: "
                                               "lightning.pytorch is fulmen.")
        package.__path__ = []  # a package, whose only submodule (pytorch) this finder gives
        return package


_finder: Optional[LightningFinder] = None


def install() -> None:
    """Map ``lightning.pytorch`` and ``pytorch_lightning`` to fulmen in this process, and in the processes it starts
    (through the environment). Lightning modules imported before are replaced."""
    global _finder
    if _finder is None:
        _finder = LightningFinder()
        sys.meta_path.insert(0, _finder)
    for name in [n for n in sys.modules if _target(n) is not None or n == "lightning"]:
        del sys.modules[name]
    os.environ[ENV] = "1"


def active() -> bool:
    """Whether this process maps Lightning's names to fulmen."""
    return _finder is not None


def _explain(err: ImportError) -> Optional[str]:
    """What to say of an import that failed on a mapped name ("cannot import name 'X' from 'fulmen.loggers'")."""
    text = str(err)
    if isinstance(err, NotInFulmen) or "cannot import name" not in text or "fulmen" not in text:
        return None
    name = text.split("'")[1]
    module = err.name or text.split("'")[3]
    lightning = "lightning.pytorch" + module[len("fulmen"):]
    return (f"{lightning}.{name} is not supported by fulmen yet (fulmen run runs lightning.pytorch and "
            "pytorch_lightning as fulmen); see docs/migration.md for what fulmen covers")


def run(script: str, args: Sequence[str] = ()) -> None:
    """Run ``script`` as ``__main__`` with ``args``, Lightning's names mapped to fulmen."""
    install()
    path = os.path.abspath(script)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"fulmen run: no such script {script!r}")
    sys.argv = [script, *args]
    sys.path.insert(0, os.path.dirname(path))
    os.environ[SCRIPT_ENV] = path
    main = types.ModuleType("__main__")
    # The spec names the module that a spawned process runs as its main module: it maps the names, then runs the
    # script (runpy.run_path would leave no spec, and the child would import the script with Lightning's names).
    main.__spec__ = importlib.util.find_spec("fulmen.utilities._spawned_main")
    main.__file__ = path
    with open(path, "rb") as f:
        code = compile(f.read(), path, "exec")
    saved = sys.modules["__main__"]
    sys.modules["__main__"] = main
    try:
        exec(code, main.__dict__)
    except ImportError as err:
        reason = _explain(err)
        if reason is None:
            raise
        raise NotInFulmen(reason, name=err.name) from err
    finally:
        sys.modules["__main__"] = saved


def relaunch_command(argv: Sequence[str]) -> list[str]:
    """The command that runs ``argv`` (a script and its arguments) again in a new process, mapped as this one:
    under ``fulmen run`` the script runs through it again."""
    return [sys.executable, "-m", "fulmen", "run", *argv]

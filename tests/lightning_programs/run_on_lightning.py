"""Runs a program on pytorch-lightning itself, for comparison: ``lightning.pytorch`` is mapped to the installed
``pytorch_lightning`` (this machine has the standalone package, not the unified ``lightning`` one).

    python tests/lightning_programs/run_on_lightning.py SCRIPT [ARGS...]
"""

import importlib
import importlib.abc
import importlib.machinery
import runpy
import sys
import types


class _Alias(importlib.abc.Loader):
    def __init__(self, module):
        self.module = module

    def create_module(self, spec):
        return self.module

    def exec_module(self, module):
        pass


class _ToPytorchLightning(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname == "lightning":
            package = types.ModuleType("lightning")
            package.__path__ = []
            return importlib.machinery.ModuleSpec(fullname, _Alias(package), is_package=True)
        if fullname == "lightning.pytorch" or fullname.startswith("lightning.pytorch."):
            module = importlib.import_module("pytorch_lightning" + fullname[len("lightning.pytorch"):])
            return importlib.machinery.ModuleSpec(fullname, _Alias(module), is_package=hasattr(module, "__path__"))
        return None


if __name__ == "__main__":
    sys.meta_path.insert(0, _ToPytorchLightning())
    script = sys.argv[1]
    sys.argv = sys.argv[1:]
    runpy.run_path(script, run_name="__main__")

"""Whether the optional packages fulmen uses are installed, found without importing them (an import can cost
seconds: the answer is needed long before the package is)."""

from __future__ import annotations

import functools
import importlib.util


@functools.lru_cache(maxsize=None)
def module_available(name: str) -> bool:
    """Whether ``name`` (a package or a dotted module) can be imported here."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package is missing, or a module without a spec
        return False

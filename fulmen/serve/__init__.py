"""Serving a module: ``ServableModule`` (what it implements) and ``ServableModuleValidator`` (a callback that checks,
before training, that it answers a request over HTTP)."""

from fulmen.serve.servable_module import ServableModule
from fulmen.serve.servable_module_validator import ServableModuleValidator

__all__ = ["ServableModule", "ServableModuleValidator"]

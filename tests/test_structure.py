"""The contracts inside fulmen that an editor and a newcomer rely on: typed trainer arguments, declared hooks and
strategy methods, one documented run state, ``@override`` on every override."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import re
from pathlib import Path

from fulmen.core.hooks import CALLBACK_HOOKS, MODULE_ONLY_HOOKS
from fulmen.loops.hooks import Hooks
from fulmen.strategies.strategy import Strategy
from fulmen.trainer.states import TrainerState

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "fulmen").rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_trainer_is_typed_any():
    found = [f"{path.relative_to(ROOT)}:{i}" for path in SOURCES
             for i, line in enumerate(path.read_text().splitlines(), 1)
             if re.search(r"\b_?trainer: (Optional\[)?Any\b", line)]
    assert found == []


def test_hooks_declares_every_hook_of_the_catalogue():
    declared = set(Hooks.__annotations__)
    assert set(CALLBACK_HOOKS + MODULE_ONLY_HOOKS) | {"validation", "test"} == declared


def test_no_module_probes_the_strategy_or_the_precision():
    probes = []
    for path in SOURCES:
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"(hasattr|getattr)\((self\.)?(trainer\.)?(strategy|precision_plugin|precision)\b", line):
                probes.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert probes == []


def test_the_strategy_base_names_what_the_trainer_and_loops_use():
    used = set()
    for path in SOURCES:
        if "/strategies/" in str(path):
            continue  # a strategy may use its own attributes
        used |= set(re.findall(r"\b(?:trainer|self)\.strategy\.([A-Za-z_]\w*)", path.read_text()))
    missing = sorted(name for name in used if not hasattr(Strategy, name)
                     and name not in _instance_attributes(Strategy))
    assert missing == []


def _instance_attributes(cls: type) -> set[str]:
    tree = ast.parse(inspect.getsource(cls.__init__).strip())
    return {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name) and node.value.id == "self"}


def test_the_run_state_documents_every_field():
    doc = TrainerState.__doc__ or ""
    listed = set(re.findall(r"^        (\w+)(?:, (\w+))?(?:, (\w+))?:", doc, re.M))
    names = {name for group in listed for name in group if name}
    fields = {f.name for f in dataclasses.fields(TrainerState)}
    assert fields - names == set(), f"fields without a line in TrainerState's docstring: {sorted(fields - names)}"
    assert names - fields == set(), f"docstring lines without a field: {sorted(names - fields)}"


def test_overrides_are_marked():
    unmarked = []
    for path in SOURCES:
        name = _module_name(path)
        if name == "fulmen.__main__":
            continue
        module = importlib.import_module(name)
        for cls in vars(module).values():
            if not inspect.isclass(cls) or cls.__module__ != name:
                continue
            bases = [b for b in cls.__mro__[1:] if b is not object]
            for attr, value in vars(cls).items():
                if attr.startswith("_") and attr.endswith("_") or not any(attr in vars(b) for b in bases):
                    continue  # (dunder and enum sunder names are Python's own protocol)
                function = value.fget if isinstance(value, property) else getattr(value, "__func__", value)
                # Only methods written in the class body: an attribute set to a function defined elsewhere
                # (``automatic_step = staticmethod(engine_step)``) cannot carry the decorator.
                if (inspect.isfunction(function) and function.__name__ == attr
                        and not getattr(function, "__override__", False)):
                    unmarked.append(f"{name}.{cls.__qualname__}.{attr}")
    assert unmarked == [], "\n".join(unmarked)

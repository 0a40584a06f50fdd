"""Imports run one way: down the layers of docs/internals.md, and never in a circle.

Every module of the package is read with ``ast``; each ``import`` of a fulmen module, at the top or inside a
function, must name a module of the same layer or a lower one. Imports under ``if TYPE_CHECKING:`` are for the type
checker only (they never run), so they may point anywhere; optional third-party packages are not fulmen's and are
not looked at. Run ``python tests/test_layers.py`` to print each module's layer and what it imports.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fulmen"

# The layers, lowest first. A module belongs to the layer of the longest prefix that names it (a package name
# covers everything inside it). docs/internals.md shows the same table.
LAYERS: dict[int, tuple[str, list[str]]] = {
    1: ("base", ["fulmen.__about__", "fulmen.utilities", "fulmen.trainer.states", "fulmen.core.hooks",
                 "fulmen.checkpoint", "fulmen.checkpoint.io", "fulmen.checkpoint.plain", "fulmen.overrides",
                 "fulmen.loops.progress"]),
    2: ("user types", ["fulmen.core", "fulmen.callbacks.callback", "fulmen.callbacks.checkpoint",
                       "fulmen.callbacks.prediction_writer", "fulmen.logging", "fulmen.loggers", "fulmen.profilers",
                       "fulmen.demos", "fulmen.serve.servable_module", "fulmen.utilities.compile"]),
    3: ("engines", ["fulmen.accelerators", "fulmen.plugins", "fulmen.strategies", "fulmen.resolve"]),
    4: ("loops", ["fulmen.loops", "fulmen.checkpoint.format", "fulmen.checkpoint.resume",
                  "fulmen.checkpoint.preemption"]),
    5: ("the run", ["fulmen.trainer", "fulmen.callbacks", "fulmen.tuner", "fulmen.serve", "fulmen.checkpoint.select"]),
    6: ("the face", ["fulmen", "fulmen.cli", "fulmen.commands", "fulmen.__main__", "fulmen.plot"]),
}


def modules() -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by its own name)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def layer_of(name: str) -> int:
    best, best_len = 0, -1
    for number, (_, prefixes) in LAYERS.items():
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = number, len(prefix)
    return best


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(name: str, path: Path, known: dict[str, Path]) -> list[tuple[str, int]]:
    """The fulmen modules that ``name`` imports when it runs, with the line of each import."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def owner(dotted: str) -> str:  # the module that defines ``dotted`` (a module, or a name inside one)
        while dotted and dotted not in known:
            dotted = dotted.rpartition(".")[0]
        return dotted

    found: list[tuple[str, int]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking_only(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                found.extend((owner(a.name), child.lineno) for a in child.names if a.name.split(".")[0] == "fulmen")
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package
                    for _ in range(child.level - 1):
                        base = base.rpartition(".")[0]
                    source = base + ("." + child.module if child.module else "")
                else:
                    source = child.module or ""
                if source.split(".")[0] == "fulmen":
                    found.extend((owner(f"{source}.{a.name}"), child.lineno) for a in child.names)
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return [(target, line) for target, line in found if target and target != name]


def graph() -> dict[str, list[tuple[str, int]]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def circles(edges: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    """The groups of modules that import each other, directly or round a longer circle (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target, _ in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in edges:
        if node not in index:
            visit(node)
    return groups


def test_every_module_has_a_layer():
    assert [name for name in modules() if layer_of(name) == 0] == []


def test_imports_run_down_the_layers():
    upward = []
    for name, targets in graph().items():
        for target, line in targets:
            if layer_of(target) > layer_of(name):
                upward.append(f"{modules()[name].relative_to(ROOT)}:{line} ({LAYERS[layer_of(name)][0]}) imports "
                              f"{target} ({LAYERS[layer_of(target)][0]})")
    assert upward == [], "\n".join(upward)


def test_no_module_imports_itself_round_a_circle():
    edges = graph()
    found = []
    for group in circles(edges):
        members = set(group)
        arrows = [f"{name} -> {target} (line {line})" for name in group for target, line in edges[name]
                  if target in members]
        found.append("; ".join(arrows))
    assert found == [], "\n".join(found)


def test_the_checker_sees_imports_inside_functions_and_skips_type_checking_blocks(tmp_path):
    source = tmp_path / "fulmen" / "low.py"
    source.parent.mkdir()
    source.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from fulmen.high import A\n"
                      "def f():\n    from fulmen.high import B\n    return B\n")
    (tmp_path / "fulmen" / "high.py").write_text("A = B = 1\n")
    known = {"fulmen.low": source, "fulmen.high": tmp_path / "fulmen" / "high.py"}
    assert imports("fulmen.low", source, known) == [("fulmen.high", 5)]
    assert circles({"a": [("b", 1)], "b": [("c", 1)], "c": [("a", 1)], "d": [("a", 1)]}) == [["a", "b", "c"]]


def test_internals_page_shows_the_same_layers():
    page = (ROOT / "docs" / "internals.md").read_text()
    section = page[page.index("## Layers"):]
    section = section[:section.index("\n## ", 1)] if "\n## " in section[1:] else section
    for number, (title, prefixes) in LAYERS.items():
        row = re.search(rf"^\| {number} \| {re.escape(title)} \|(.*)$", section, re.M)
        assert row is not None, f"docs/internals.md has no row for layer {number} ({title})"
        shown = set(re.findall(r"`([\w.]+)`", row.group(1)))
        assert shown == set(prefixes), (number, sorted(shown ^ set(prefixes)))


if __name__ == "__main__":
    for name, targets in sorted(graph().items()):
        below = sorted({t for t, _ in targets})
        print(f"{layer_of(name)} {name}: {', '.join(below) if below else '-'}", file=sys.stdout)

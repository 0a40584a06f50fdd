"""The documentation stays true to the code: the quickstart runs, every Trainer argument is on the arguments page
with its default, every public callback is in the API reference, and the README's links lead somewhere."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import fulmen
import fulmen.callbacks

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def test_the_quickstart_runs(tmp_path):
    pytest.importorskip("sklearn")
    text = (DOCS / "quickstart.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    code = code.replace("max_epochs=20", "max_epochs=3")  # the same script, shorter
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "'test_acc'" in done.stdout


def test_every_trainer_argument_is_documented_with_its_default():
    page = (DOCS / "trainer.md").read_text()
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(\w+)` \| (.+?) \|", page, re.M)}
    for name, param in inspect.signature(fulmen.Trainer.__init__).parameters.items():
        if name == "self":
            continue
        assert name in rows, f"docs/trainer.md has no row for Trainer({name}=...)"
        assert rows[name].startswith(f"`{param.default!r}`".replace("'", '"')), (name, rows[name], param.default)


def test_every_callback_is_in_the_api_reference():
    page = (DOCS / "api" / "callbacks.md").read_text()
    for name in fulmen.callbacks.__all__:
        assert f".{name}\n" in page, f"docs/api/callbacks.md lacks {name}"


def test_local_links_of_the_readme_exist():
    readme = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme):
        if "://" not in target:
            assert (ROOT / target).exists(), f"README links to {target}, which does not exist"


def test_every_hook_and_property_of_the_base_classes_has_a_description():
    """The API pages list the Callback hooks and the LightningModule's hooks and properties with their docstrings:
    none may be blank."""
    import inspect

    from fulmen.callbacks.callback import Callback
    from fulmen.core.module import LightningModule

    blank = []
    for cls in (Callback, *[c for c in LightningModule.__mro__ if c.__module__.startswith("fulmen")]):
        for name, value in vars(cls).items():
            if name.startswith("_"):
                continue
            target = value.fget if isinstance(value, property) else getattr(value, "__func__", value)
            if (callable(target) or isinstance(value, property)) and not (inspect.getdoc(target) or "").strip():
                blank.append(f"{cls.__name__}.{name}")
    assert blank == []


def test_code_in_tables_wraps_between_words():
    """The errors table's messages are code spans; the site's stylesheet makes them wrap at spaces, not mid-word."""
    import yaml

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text().replace("!!python", "#"))
    assert "stylesheets/extra.css" in config.get("extra_css", [])
    css = (ROOT / "docs" / "stylesheets" / "extra.css").read_text()
    assert "table:not([class]) code" in css and "word-break: normal" in css


def test_every_trainer_argument_has_a_description_in_the_docstring():
    """What editors show on hover and ``fulmen fit --help`` prints (jsonargparse reads the docstring)."""
    docstring_parser = pytest.importorskip("docstring_parser")

    described = {p.arg_name: p.description for p in docstring_parser.parse(fulmen.Trainer.__init__.__doc__).params}
    for name in inspect.signature(fulmen.Trainer.__init__).parameters:
        if name != "self":
            assert (described.get(name) or "").strip(), f"Trainer.__init__'s docstring does not describe {name}"

"""What a type checker sees of fulmen: the real signatures of the Trainer and of what the lazily imported packages
(``fulmen.callbacks``, ``fulmen.strategies``, ``fulmen.loggers``) export, so that mypy catches a misspelt argument
as it does with Lightning. mypy runs on tests/typing/user_script.py, clean as written and with typos and a wrong type put in (mypy takes
about half a minute a run, as it reads torch)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "typing" / "user_script.py"

pytest.importorskip("mypy")


def _mypy(tmp_path: Path, source: str) -> str:
    """mypy's report on ``source`` as a user's file, with fulmen found as a package (its own code analysed but not
    reported: an installed package's errors are not the user's)."""
    script = tmp_path / "script.py"
    script.write_text(source)
    env = dict(os.environ, MYPYPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "mypy", "--follow-imports=silent", "--no-incremental",
                           "--cache-dir", str(tmp_path / ".mypy_cache"), "--ignore-missing-imports", str(script)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    return proc.stdout


def test_a_correct_script_is_clean(tmp_path):
    out = _mypy(tmp_path, SCRIPT.read_text())
    assert "Success: no issues found" in out, out


def test_misspelt_arguments_are_reported(tmp_path):
    source = SCRIPT.read_text()
    source = source.replace("max_epochs=2", "max_epoch=2")
    source = source.replace('EarlyStopping(monitor="val_loss"', 'EarlyStopping(monitr="val_loss"')
    source = source.replace('ModelCheckpoint(monitor="val_loss", save_top_k=2)',
                            'ModelCheckpoint(monitor="val_loss", save_topk=2)')
    source = source.replace("epochs: int = trainer.current_epoch", "epochs: str = trainer.current_epoch")
    source = source.replace('CSVLogger("logs")', 'CSVLogger(save_dri="logs")')
    out = _mypy(tmp_path, source)
    for typo, fix in [("max_epoch", "max_epochs"), ("monitr", "monitor"), ("save_topk", "save_top_k")]:
        assert f'Unexpected keyword argument "{typo}"' in out and f'did you mean "{fix}"' in out, out
    assert 'Unexpected keyword argument "save_dri"' in out, out
    assert "Incompatible types in assignment" in out and '"int"' in out, out  # a property's type is known too


# mypy over fulmen's own code. The errors it reported when this check began (imprecise types in older code, each
# harmless at run time) are listed in KNOWN; the test fails on any error that is not there, so no new one creeps in,
# and on a listed one that is gone, so the list only shrinks. Lines are left out of the comparison (code moves).
KNOWN = ROOT / "tests" / "typing" / "mypy-known.txt"


def mypy_errors(cache: Path) -> list[str]:
    """mypy's errors on the fulmen package, as "path: message  [code]" without line numbers, sorted."""
    proc = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir", str(cache),
                           "--ignore-missing-imports", "--hide-error-context", "--no-pretty", "-p", "fulmen"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    errors = []
    for line in proc.stdout.splitlines():
        path, _, rest = line.partition(":")
        line_number, _, message = rest.partition(": error: ")
        if message and line_number.isdigit():
            errors.append(f"{path}: {message}")
    return sorted(errors)


def test_fulmen_has_no_type_errors_beyond_the_known_ones(tmp_path):
    known = sorted(line for line in KNOWN.read_text().splitlines() if line and not line.startswith("#"))
    found = mypy_errors(tmp_path / ".mypy_cache")
    new, gone = list(found), []
    for line in known:
        if line in new:
            new.remove(line)
        else:
            gone.append(line)
    assert new == [], "mypy reports new errors in fulmen:\n" + "\n".join(new)
    assert gone == [], (f"These errors are fixed; remove them from {KNOWN.relative_to(ROOT)}:\n" + "\n".join(gone))


if __name__ == "__main__":  # python tests/test_typing.py: write the list of known errors anew
    import tempfile

    with tempfile.TemporaryDirectory() as cache:
        lines = mypy_errors(Path(cache))
    KNOWN.write_text("# mypy's errors on fulmen/ that tests/test_typing.py tolerates; fix one, then delete its line.\n"
                     + "\n".join(lines) + "\n")
    print(f"{len(lines)} known errors written to {KNOWN}")

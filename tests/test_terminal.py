"""What a person sees in a terminal: a fit runs in a real pseudo-terminal, its output goes through a VT100 emulator
(pyte), and the test reads the screen back: the last epoch's bar stays with its metrics, a printed line stands whole
above the bar, and validation starts with the epoch bar at 100%."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

pyte = pytest.importorskip("pyte")
pytest.importorskip("tqdm")

ROOT = Path(__file__).resolve().parents[1]
COLUMNS, LINES = 160, 40

PROGRAM = """
import logging, sys
import torch
import fulmen as L
from fulmen.callbacks import EarlyStopping, TQDMProgressBar
from fulmen.demos.boring_classes import BoringModel


class Model(BoringModel):
    def training_step(self, batch, batch_idx):
        out = super().training_step(batch, batch_idx)
        self.log("train_loss", out["loss"], prog_bar=True)
        return out

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", 0.9 - 0.3 * self.current_epoch, prog_bar=True)  # 0.9, 0.6, 0.3: falling

    def on_validation_epoch_end(self):
        if not self.trainer.sanity_checking:
            self.print(f"printed line after epoch {self.current_epoch}: all of it on one line")


L.seed_everything(0)
trainer = L.Trainer(max_epochs=int(sys.argv[1]), limit_train_batches=45, limit_val_batches=8, logger=False,
                    enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0,
                    callbacks=[TQDMProgressBar(), EarlyStopping("val_loss", patience=0, verbose=True)])
trainer.fit(Model())
print("FIT DONE")
"""


def _run_in_terminal(tmp_path: Path, *args: str) -> list[list[str]]:
    """Run PROGRAM in a pseudo-terminal of COLUMNS x LINES; return the screens seen, one after each read."""
    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    main, child = pty.openpty()
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS=str(COLUMNS), LINES=str(LINES), TERM="xterm",
               PYTHONWARNINGS="ignore")
    os.set_blocking(main, False)
    import fcntl
    import struct
    import termios

    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", LINES, COLUMNS, 0, 0))
    proc = subprocess.Popen([sys.executable, str(script), *args], stdin=child, stdout=child, stderr=child, env=env,
                            close_fds=True)
    os.close(child)
    screen = pyte.Screen(COLUMNS, LINES)
    stream = pyte.ByteStream(screen)
    screens: list[list[str]] = []
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 1.0)
        if ready:
            try:
                data = os.read(main, 512)
            except OSError:  # the child side closed: the program ended
                break
            if not data:
                break
            stream.feed(data)
            screens.append(list(screen.display))
        elif proc.poll() is not None:
            break
    proc.wait(timeout=600)
    os.close(main)
    assert proc.returncode == 0, "\n".join(screens[-1] if screens else [])
    return screens


@pytest.fixture(scope="module")
def screens(tmp_path_factory):
    return _run_in_terminal(tmp_path_factory.mktemp("tty"), "3")


def _lines(screen: list[str]) -> list[str]:
    return [line.rstrip() for line in screen if line.strip()]


def test_the_last_epochs_bar_stays_with_its_metrics(screens):
    final = _lines(screens[-1])
    assert final[-1] == "FIT DONE"
    bars = [line for line in final if line.startswith("Epoch ")]
    assert bars, final
    last = bars[-1]
    # EarlyStopping (patience 0, val_loss falling) lets all three epochs run; the bar of the last stays, full.
    assert last.startswith("Epoch 2: 100%") and "45/45" in last, final
    assert "train_loss=" in last and "val_loss=0.300" in last, final  # padded as Lightning pads it (not 0.3)


def test_a_printed_line_stands_whole_above_the_bar(screens):
    final = _lines(screens[-1])
    printed = [line for line in final if "printed line" in line]
    assert printed == [f"printed line after epoch {e}: all of it on one line" for e in range(3)], final


def test_validation_starts_with_the_epoch_bar_at_100_percent(screens):
    # The first screen that shows the validation bar beside the epoch bar. (A screen is read whenever output
    # arrives, so on a busy machine one may catch a redraw half done, the epoch line cleared and not yet rewritten:
    # such a screen says nothing about the count.)
    first_validation = next(screen for screen in screens if any(line.startswith("Validation") for line in screen)
                            and any(line.startswith("Epoch 0") for line in screen))
    epoch = [line for line in _lines(first_validation) if line.startswith("Epoch 0")]
    assert "45/45" in epoch[-1] and "100%" in epoch[-1], _lines(first_validation)


def test_a_callbacks_log_message_does_not_tear_the_bar(screens):
    """EarlyStopping(verbose=True) logs a line each validation: it stands whole above the bar."""
    final = _lines(screens[-1])
    messages = [line for line in final if "EarlyStopping" in line]
    assert len(messages) == 3 and all(line.startswith("EarlyStopping: val_loss") for line in messages), final
    assert not any("Epoch " in line and "EarlyStopping" in line for line in final), final

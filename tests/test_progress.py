"""The default progress bar draws the stages and reads logged values on a clock, not on every step."""

import os
import subprocess
import sys

import pytest

import fulmen
from fulmen.callbacks import TQDMProgressBar
from fulmen.demos.boring_classes import BoringModel
from fulmen.utilities.exceptions import MisconfigurationException

pytest.importorskip("tqdm")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Logs(BoringModel):
    def training_step(self, batch, batch_idx):
        out = super().training_step(batch, batch_idx)
        self.log("train_loss", out["loss"], prog_bar=True)
        return out


def test_the_default_bar_and_summary_are_riches_when_rich_is_installed_as_in_lightning():
    pytest.importorskip("rich")
    from fulmen.callbacks import RichModelSummary, RichProgressBar

    trainer = fulmen.Trainer(logger=False)
    assert isinstance(trainer.progress_bar_callback, RichProgressBar)
    assert [type(cb).__name__ for cb in trainer.callbacks if "Summary" in type(cb).__name__] == ["RichModelSummary"]
    assert isinstance(next(cb for cb in trainer.callbacks if "Summary" in type(cb).__name__), RichModelSummary)
    # Without rich: tqdm's bar and the plain table.
    code = ("import sys; sys.modules['rich'] = None\n"
            "import fulmen\n"
            "t = fulmen.Trainer(logger=False)\n"
            "print(sorted(type(c).__name__ for c in t.callbacks))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.stdout.strip() == str(sorted(["ModelCheckpoint", "ModelSummary", "TQDMProgressBar"])), out.stderr


def test_the_tqdm_bar_shows_stages_and_metrics(capsys):
    trainer = fulmen.Trainer(max_epochs=1, limit_train_batches=10, limit_val_batches=3, enable_model_summary=False,
                             callbacks=[TQDMProgressBar()])
    model = Logs()
    trainer.fit(model)
    trainer.test(model, verbose=False)
    out = capsys.readouterr().out
    for text in ("Sanity Checking", "Epoch 0", "Validation", "Testing", "train_loss=", "v_num=0"):
        assert text in out


def test_metrics_are_read_on_a_clock_not_per_step():
    reads = []

    class Counting(TQDMProgressBar):
        def get_metrics(self, trainer, pl_module):
            reads.append(trainer.global_step)
            return super().get_metrics(trainer, pl_module)

    bar = Counting(metrics_interval=3600.0)
    trainer = fulmen.Trainer(max_epochs=2, limit_train_batches=50, limit_val_batches=0, enable_model_summary=False,
                             callbacks=[bar])
    trainer.fit(Logs())
    # once at the first batch (the clock starts at 0), once at each of the 2 epoch ends: not 100 reads
    assert len(reads) == 3


def test_progress_bar_arguments():
    with pytest.raises(MisconfigurationException, match="enable_progress_bar=False"):
        fulmen.Trainer(enable_progress_bar=False, callbacks=[TQDMProgressBar()])
    with pytest.raises(MisconfigurationException, match="2 progress bars"):
        fulmen.Trainer(callbacks=[TQDMProgressBar(), TQDMProgressBar()])
    assert fulmen.Trainer(enable_progress_bar=False).progress_bar_callback is None
    with pytest.raises(ValueError, match="refresh_rate=-1"):
        TQDMProgressBar(refresh_rate=-1)


def _fit_script(tmp_path, bar_args=""):
    script = tmp_path / "run.py"
    script.write_text(
        "import fulmen\n"
        "from fulmen.callbacks import TQDMProgressBar\n"
        "from tests.test_progress import Logs\n"
        f"trainer = fulmen.Trainer(max_epochs=2, limit_train_batches=50, limit_val_batches=3, logger=False,\n"
        f"                         enable_model_summary=False, callbacks=[TQDMProgressBar({bar_args})])\n"
        "trainer.fit(Logs())\n")
    import os
    import pathlib
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(root))
    # Bytes, decoded by hand: text mode would turn tqdm's carriage returns into newlines.
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, timeout=600)
    return proc.stdout.decode()


def test_output_that_is_not_a_terminal_gets_plain_lines(tmp_path):
    """Piped output (as in a SLURM log): whole lines, no carriage-return frames; one per stage at least."""
    out = _fit_script(tmp_path)
    assert "\r" not in out
    lines = out.splitlines()
    # Each stage's line when it ends (the epoch-end validation ends inside the epoch).
    assert [line.split(":")[0] for line in lines] == ["Sanity Checking", "Validation", "Epoch 0", "Validation",
                                                      "Epoch 1"]
    assert lines[2].startswith("Epoch 0: 50/50 [") and "train_loss=" in lines[2] and "it/s]" in lines[2]
    many = _fit_script(tmp_path, "plain_interval=0.0, draw_interval=0.0").splitlines()
    assert len([line for line in many if line.startswith("Epoch 0")]) == 51  # a line per batch, then the end
    assert "\r" in _fit_script(tmp_path, "plain=False")  # tqdm frames when asked for


def test_a_stage_that_stops_early_closes_its_bar_at_the_batch_it_reached(capsys):
    class StopAt7(fulmen.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            trainer.should_stop = batch_idx == 6

    trainer = fulmen.Trainer(max_epochs=1, limit_val_batches=0, enable_model_summary=False, logger=False,
                             callbacks=[TQDMProgressBar(plain=True), StopAt7()])
    trainer.fit(Logs())  # the draws are a tenth of a second apart: only the first batch was drawn
    assert capsys.readouterr().out.startswith("Epoch 0: 7/64 [")


def test_a_process_other_than_rank_zero_draws_nothing_and_runs_every_stage(capsys):
    # What every rank but zero does in a multi-process run: the bar is switched off in setup, and its batch hooks
    # must then do nothing (they once counted evaluation batches of a bar that was never opened).
    class NotRankZero(TQDMProgressBar):
        def setup(self, trainer, pl_module, stage):
            self.disable()

    trainer = fulmen.Trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=2, limit_test_batches=2,
                             enable_model_summary=False, callbacks=[NotRankZero()], logger=False)
    model = Logs()
    trainer.fit(model)
    trainer.test(model, verbose=False)
    trainer.predict(model)
    out = capsys.readouterr().out
    assert "Epoch 0" not in out and "Validation" not in out and "Testing" not in out

"""The default progress bar draws the stages and reads logged values on a clock, not on every step."""

import pytest

import fulmen
from fulmen.callbacks import TQDMProgressBar
from fulmen.demos import BoringModel
from fulmen.utilities.exceptions import MisconfigurationException

pytest.importorskip("tqdm")


class Logs(BoringModel):
    def training_step(self, batch, batch_idx):
        out = super().training_step(batch, batch_idx)
        self.log("train_loss", out["loss"], prog_bar=True)
        return out


def test_default_bar_shows_stages_and_metrics(capsys):
    trainer = fulmen.Trainer(max_epochs=1, limit_train_batches=10, limit_val_batches=3, enable_model_summary=False)
    assert isinstance(trainer.progress_bar_callback, TQDMProgressBar)
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

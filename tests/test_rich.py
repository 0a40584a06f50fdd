"""RichProgressBar and RichModelSummary draw with the real rich library; the output is read back."""

from __future__ import annotations

import io
import sys

import pytest
import torch

import fulmen
from fulmen.callbacks import ModelSummary, RichModelSummary, RichProgressBar, RichProgressBarTheme
from fulmen.demos.boring_classes import BoringModel

pytest.importorskip("rich")


class Logs(BoringModel):
    def training_step(self, batch, batch_idx):
        out = super().training_step(batch, batch_idx)
        self.log("train_loss", out["loss"], prog_bar=True)
        return out

    def val_dataloader(self):  # two loaders: a bar each
        return [torch.utils.data.DataLoader(torch.randn(6, 32), batch_size=2)] * 2

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        self.log("val_loss", self.step(batch), prog_bar=True)


def _bar(**kwargs):
    out = io.StringIO()
    return RichProgressBar(console_kwargs={"file": out, "width": 160, "force_terminal": True}, **kwargs), out


def test_bars_for_each_stage_with_the_metrics(tmp_path):
    bar, out = _bar(metrics_interval=0)
    trainer = fulmen.Trainer(default_root_dir=tmp_path, max_epochs=2, limit_train_batches=4, callbacks=[bar],
                             enable_checkpointing=False)
    assert trainer.progress_bar_callback is bar
    assert isinstance(trainer.callbacks[0], RichModelSummary)  # the rich bar brings the rich table, as in Lightning
    model = Logs()
    trainer.fit(model)
    trainer.test(model, dataloaders=torch.utils.data.DataLoader(torch.randn(4, 32)), verbose=False)
    text = out.getvalue()
    for shown in ("Sanity Checking", "Epoch 0/1", "Epoch 1/1", "4/4", "Validation", "3/3", "Testing",
                  "train_loss: ", "val_loss/dataloader_idx_0: ", "v_num: 0", "it/s"):
        assert shown in text, shown
    assert bar.progress is None  # stopped at teardown


def test_refresh_rate_zero_draws_nothing(tmp_path):
    bar, out = _bar(refresh_rate=0)
    fulmen.Trainer(default_root_dir=tmp_path, max_steps=2, limit_val_batches=0, callbacks=[bar],
                   enable_model_summary=False).fit(BoringModel())
    assert out.getvalue() == "" and not bar.is_enabled


def test_theme_and_bad_arguments():
    bar, _ = _bar(theme=RichProgressBarTheme(description="bold", metrics_format=".1e"))
    assert bar.theme.metrics_format == ".1e"
    with pytest.raises(ValueError, match="refresh_rate=-1"):
        RichProgressBar(refresh_rate=-1)


def test_rich_summary_table(capsys):
    class Net(BoringModel):
        def __init__(self):
            super().__init__()
            self.example_input_array = torch.zeros(2, 32)

    trainer = fulmen.Trainer(max_steps=1, limit_val_batches=0, logger=False, enable_progress_bar=False,
                             enable_checkpointing=False, callbacks=[RichModelSummary(max_depth=2)])
    assert sum(isinstance(cb, ModelSummary) for cb in trainer.callbacks) == 1  # no default summary besides it
    trainer.fit(Net())
    out = capsys.readouterr().out
    for shown in ("Name", "layer", "Linear", "66", "In sizes", "[2, 32]", "Out sizes", "[2, 2]",
                  "Trainable params: 66", "Total Flops: 256"):
        assert shown in out, shown


def test_missing_rich_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "rich", None)
    with pytest.raises(ModuleNotFoundError, match=r"fulmen\[rich\]"):
        RichProgressBar()
    with pytest.raises(ModuleNotFoundError, match=r"fulmen\[rich\]"):
        RichModelSummary()


def test_output_to_a_file_is_one_whole_line_per_bar(tmp_path):
    """Rich bars sent to a file (not a terminal): no live frames wrapped at 80 columns, but one whole line per bar
    when its stage ends, with the counts, the times, the speed and the metrics together."""
    out = io.StringIO()  # not a terminal
    bar = RichProgressBar(console_kwargs={"file": out})

    class Logs(BoringModel):
        def training_step(self, batch, batch_idx):
            result = super().training_step(batch, batch_idx)
            self.log("train_loss", result["loss"], prog_bar=True)
            return result

    trainer = fulmen.Trainer(max_epochs=2, limit_train_batches=10, limit_val_batches=3, logger=False,
                             enable_checkpointing=False, enable_model_summary=False, callbacks=[bar],
                             default_root_dir=tmp_path)
    trainer.fit(Logs())
    lines = [line.rstrip() for line in out.getvalue().splitlines() if line.strip()]
    assert [line.split(" ━")[0] for line in lines] == ["Sanity Checking", "Validation", "Epoch 0/1", "Validation",
                                                       "Epoch 1/1"], lines
    for line in lines:
        assert " • " in line and "it/s" in line, line
    assert "10/10" in lines[2] and "train_loss: " in lines[2]

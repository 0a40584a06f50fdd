"""fulmen in a notebook: a real Jupyter kernel (nbclient) runs a fit; its output holds tqdm's widget bars (as
Lightning's does), not plain text lines, and what the module prints comes out as text."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("ipywidgets")

ROOT = Path(__file__).resolve().parents[1]
WIDGET = "application/vnd.jupyter.widget-view+json"

CELL = """
import sys
sys.path.insert(0, {root!r})
import warnings
warnings.simplefilter("ignore")
import fulmen as L
from fulmen.callbacks import TQDMProgressBar
from fulmen.demos.boring_classes import BoringModel


class Model(BoringModel):
    def on_train_epoch_end(self):
        self.print(f"epoch {{self.current_epoch}} done")


trainer = L.Trainer(max_epochs=2, limit_train_batches=20, limit_val_batches=4, logger=False,
                    enable_checkpointing=False, enable_model_summary=False, callbacks=[TQDMProgressBar()])
trainer.fit(Model())
print("fit done at step", trainer.global_step)
"""


def test_a_fit_in_a_kernel_shows_widget_bars(tmp_path):
    notebook = nbformat.v4.new_notebook()
    notebook.cells.append(nbformat.v4.new_code_cell(CELL.format(root=str(ROOT))))
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    os.environ.setdefault("JUPYTER_PLATFORM_DIRS", "1")
    client.execute()
    outputs = notebook.cells[0].outputs
    widgets = [out for out in outputs if out.get("output_type") == "display_data" and WIDGET in out.get("data", {})]
    text = "".join(out.get("text", "") for out in outputs if out.get("output_type") == "stream")
    # One bar for the sanity check, the training bar, one per validation: each a widget.
    assert len(widgets) >= 3, outputs
    assert "fit done at step 40" in text
    assert "epoch 0 done" in text and "epoch 1 done" in text
    assert "Epoch 0:" not in text and "it/s]" not in text  # no plain-line bars beside the widgets

"""Make the screenshots of the progress bars in docs/images (``python docs/images/screenshots.py``).

- ``bar-terminal.svg``: a short fit with the TQDM bar in a real pseudo-terminal, the screen read back through a
  VT100 emulator (pyte), as tests/test_terminal.py reads it, drawn as SVG text;
- ``bar-rich.svg``: the same fit with RichProgressBar, recorded by rich's console (``Console.save_svg``), taken
  just before the fit ends;
- ``bar-notebook.svg``: the same fit in a real Jupyter kernel (nbclient, as tests/test_notebook.py runs it), drawn
  from the state of the widgets the kernel created (tqdm's HBox of a label, a progress bar and the numbers).
"""

from __future__ import annotations

import html
import io
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

HERE = Path(__file__).resolve().parent


def terminal_svg(lines: list[str], path: Path, columns: int) -> None:
    """``lines`` of a terminal screen as an SVG picture: monospace text on a dark background."""
    width, height = columns * 8.4 + 24, len(lines) * 18 + 24
    rows = "\n".join(
        f'<text x="12" y="{28 + 18 * i}" xml:space="preserve">{html.escape(line)}</text>' for i, line in enumerate(lines))
    path.write_text(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}">\n'
        f'<rect width="100%" height="100%" rx="6" fill="#1e1e1e"/>\n'
        f'<g font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="14" fill="#e8e8e8">\n'
        f"{rows}\n</g>\n</svg>\n")


def tqdm_screenshot() -> None:
    from tests.test_terminal import COLUMNS, _lines, _run_in_terminal

    screens = _run_in_terminal(Path(tempfile.mkdtemp()), "3")
    terminal_svg([line for line in _lines(screens[-1]) if line != "FIT DONE"], HERE / "bar-terminal.svg", COLUMNS)


def rich_screenshot() -> None:
    import fulmen as L
    from fulmen.callbacks import Callback, RichProgressBar

    from tests.test_terminal import PROGRAM

    # The terminal picture's model (PROGRAM's class, up to where it starts the fit), so both show the same run.
    namespace: dict = {}
    exec(PROGRAM.split("L.seed_everything")[0], namespace)
    Model = namespace["Model"]

    class Snapshot(Callback):
        """The bars as they stand when training ends, printed once into a recording console."""

        def on_train_end(self, trainer, pl_module):
            from rich.console import Console

            progress = trainer.progress_bar_callback.progress
            console = Console(record=True, force_terminal=True, width=120, file=io.StringIO())
            console.print(progress.make_tasks_table(progress.tasks))
            console.save_svg(str(HERE / "bar-rich.svg"), title="fulmen: RichProgressBar")

    bar = RichProgressBar(console_kwargs={"force_terminal": True, "width": 120, "file": io.StringIO()})
    L.seed_everything(0)
    L.Trainer(max_epochs=3, limit_train_batches=45, limit_val_batches=8, logger=False, enable_checkpointing=False,
              enable_model_summary=False, callbacks=[bar, Snapshot()]).fit(Model())


def notebook_screenshot() -> None:
    import nbclient
    import nbformat

    from tests.test_notebook import CELL

    notebook = nbformat.v4.new_notebook()
    notebook.cells.append(nbformat.v4.new_code_cell(CELL.format(root=str(ROOT))))
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3").execute()
    state = notebook.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    models = {key: value["state"] for key, value in state.items()}
    shown = [out["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
             for out in notebook.cells[0].outputs if "application/vnd.jupyter.widget-view+json" in out.get("data", {})]
    rows = []
    for box in shown:
        layout = models.get(str(models[box].get("layout", "")).replace("IPY_MODEL_", ""), {})
        if layout.get("visibility") == "hidden":
            continue  # a bar closed with leave=False (validation, sanity check): gone from the page
        parts = [models[child.replace("IPY_MODEL_", "")] for child in models[box].get("children", [])]
        texts = [html.unescape(p.get("value", "")).replace("\xa0", " ") for p in parts if "max" not in p]
        bar = next((p for p in parts if "max" in p), None)
        if bar is not None and len(texts) == 2:
            rows.append((texts[0], bar["value"] / bar["max"] if bar["max"] else 0.0, bar.get("bar_style", ""),
                         texts[1]))
    width, height = 980, len(rows) * 30 + 20
    drawn = []
    for i, (label, done, style, numbers) in enumerate(rows):
        y = 12 + 30 * i
        color = "#5cb85c" if style == "success" else "#2196f3"
        drawn.append(
            f'<text x="150" y="{y + 15}" text-anchor="end">{html.escape(label)}</text>'
            f'<rect x="160" y="{y + 3}" width="300" height="16" fill="#eeeeee"/>'
            f'<rect x="160" y="{y + 3}" width="{300 * done:.0f}" height="16" fill="{color}"/>'
            f'<text x="470" y="{y + 15}">{html.escape(numbers)}</text>')
    (HERE / "bar-notebook.svg").write_text(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}">\n'
        f'<rect width="100%" height="100%" fill="#ffffff" stroke="#dddddd"/>\n'
        f'<g font-family="Helvetica, Arial, sans-serif" font-size="13" fill="#333333">\n'
        + "\n".join(drawn) + "\n</g>\n</svg>\n")


if __name__ == "__main__":
    tqdm_screenshot()
    rich_screenshot()
    notebook_screenshot()
    print("wrote", *(HERE / name for name in ("bar-terminal.svg", "bar-rich.svg", "bar-notebook.svg")))

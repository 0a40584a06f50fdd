"""Progress bars: the ``ProgressBar`` base (``progress_bar.py``), ``TQDMProgressBar`` (``tqdm_progress.py``) and
``RichProgressBar`` (``rich_progress.py``)."""

from fulmen.callbacks.progress.progress_bar import ProgressBar
from fulmen.callbacks.progress.rich_progress import RichProgressBar
from fulmen.callbacks.progress.tqdm_progress import TQDMProgressBar

__all__ = ["ProgressBar", "RichProgressBar", "TQDMProgressBar"]

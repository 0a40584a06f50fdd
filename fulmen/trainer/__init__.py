"""The Trainer (``trainer.py``) and the run state it advances (``states.py``)."""

from fulmen.trainer.trainer import Trainer
from fulmen.utilities.seed import seed_everything

__all__ = ["Trainer", "seed_everything"]

"""The Tuner: ``lr_find`` (``lr_finder.py``) and ``scale_batch_size`` (``batch_size_scaling.py``), each run as a
trial (``trial.py``) that leaves the model and the Trainer as they were."""

from fulmen.tuner.tuning import Tuner

__all__ = ["Tuner"]

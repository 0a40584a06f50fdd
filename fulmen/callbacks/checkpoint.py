"""Checkpoint: the base class of the callbacks that save checkpoints."""

from __future__ import annotations

from fulmen.callbacks.callback import Callback


class Checkpoint(Callback):
    """The base of ModelCheckpoint and OnExceptionCheckpoint, as in Lightning: ``isinstance(cb, Checkpoint)`` finds
    the callbacks that save checkpoints. (``trainer.checkpoint_callbacks`` lists the ModelCheckpoints only.)"""

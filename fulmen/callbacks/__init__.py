"""Callbacks: objects whose hooks the Trainer calls at fixed points of a run."""

from fulmen.callbacks.callback import Callback

__all__ = ["Callback"]

"""Mixins a user class may take: ``HyperparametersMixin``."""

from fulmen.core.mixins.hparams_mixin import HyperparametersMixin

__all__ = ["HyperparametersMixin"]

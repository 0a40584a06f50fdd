"""Checkpoint IO plugins: how checkpoints are written, read and deleted (``Trainer(plugins=[AsyncCheckpointIO()])``)."""

from fulmen.plugins.io.async_plugin import AsyncCheckpointIO
from fulmen.plugins.io.checkpoint_plugin import CheckpointIO
from fulmen.plugins.io.torch_plugin import TorchCheckpointIO
from fulmen.plugins.io.xla_plugin import XLACheckpointIO

__all__ = ["AsyncCheckpointIO", "CheckpointIO", "TorchCheckpointIO", "XLACheckpointIO"]

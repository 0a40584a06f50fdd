"""XLACheckpointIO: checkpoints of runs on XLA devices, written with CPU tensors."""

from __future__ import annotations

from typing import Any, Optional

import torch
from typing_extensions import override

from fulmen.plugins.io.checkpoint_plugin import _PATH
from fulmen.plugins.io.torch_plugin import TorchCheckpointIO
from fulmen.utilities.apply_to_collection import apply_to_collection


class XLACheckpointIO(TorchCheckpointIO):
    """The default atomic writer, with every tensor brought to the CPU first (a file of XLA tensors would need
    torch_xla, and an XLA device, to load)."""

    @override
    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Optional[Any] = None) -> None:
        cpu = apply_to_collection(checkpoint, torch.Tensor, lambda t: t.detach().cpu())
        super().save_checkpoint(cpu, path, storage_options)

"""The step under manual optimization: ``training_step`` steps its optimizers itself."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import Tensor

from fulmen.core.step import NO_CONTEXT, begin_training_step
from fulmen.utilities.exceptions import MisconfigurationException

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer


def manual_step(trainer: "Trainer", batch: Any, batch_idx: int) -> Any:
    """Manual optimization: ``training_step`` steps its optimizers itself (through ``self.optimizers()``)."""
    with begin_training_step(trainer) or NO_CONTEXT:
        output = trainer._training_step(batch, batch_idx)
    if output is None:
        return {}
    if isinstance(output, Tensor):
        return {"loss": output.detach()}
    if isinstance(output, dict):
        return {k: v.detach() if isinstance(v, Tensor) else v for k, v in output.items()}
    raise MisconfigurationException(
        f"Under manual optimization, training_step must return a Tensor, a dict or None; it returned "
        f"{type(output).__name__}"
    )

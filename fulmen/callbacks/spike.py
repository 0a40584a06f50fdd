"""SpikeDetection: stop training when the loss of a batch jumps away from its running mean, and write down the
batches to skip when training again."""

from __future__ import annotations

import json
import math
import os
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Optional, Union

import torch
from typing_extensions import override

from fulmen.callbacks.callback import Callback
from fulmen.utilities.exceptions import TrainingSpikeException

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer


class SpikeDetection(Callback):
    """Watch the training loss (the step's ``loss`` output) after every batch, as Lightning's SpikeDetection does.

    From batch ``warmup`` of an epoch on, a loss is a spike when it is worse than the previous loss (higher with
    ``mode="min"``) and differs from the mean of the last ``window`` losses by at least ``atol`` and by at least
    ``rtol`` times that mean (a None tolerance is no condition); with ``finite_only`` a NaN or infinite loss is a
    spike too. On a spike, that batch and the one before are added to ``bad_batches``, written as a JSON list to
    ``exclude_batches_path`` (default ``<default_root_dir>/skip_batches.json``), and the run stops with
    ``TrainingSpikeException``.

    Reading the loss is a host-device sync after every batch: that is what checking it each batch costs.
    The running window is in the checkpoint (a fulmen addition), so a resumed run judges the next batch as the
    uninterrupted one would.
    """

    def __init__(self, mode: str = "min", window: int = 10, warmup: int = 1, atol: Optional[float] = None,
                 rtol: Optional[float] = 2.0, exclude_batches_path: Optional[Union[str, os.PathLike[str]]] = None,
                 finite_only: bool = True) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"SpikeDetection(mode={mode!r}): pass 'min' (the loss should fall) or 'max'")
        if not isinstance(window, int) or isinstance(window, bool) or window < 1:
            raise ValueError(f"SpikeDetection(window={window!r}): pass the number of recent losses to average, >= 1")
        if not isinstance(warmup, int) or isinstance(warmup, bool) or warmup < 0:
            raise ValueError(f"SpikeDetection(warmup={warmup!r}): pass the number of batches to skip, >= 0")
        self.mode = mode
        self.window = window
        self.warmup = warmup
        self.atol = atol
        self.rtol = rtol
        self.exclude_batches_path = None if exclude_batches_path is None else os.fspath(exclude_batches_path)
        self.finite_only = finite_only
        self.last_val: float = 0.0
        self.bad_batches: list[int] = []
        self._recent: deque[float] = deque(maxlen=window)

    @torch.no_grad()
    @override
    def on_train_batch_end(self, trainer: "Trainer", pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if isinstance(outputs, torch.Tensor):
            loss = outputs
        elif isinstance(outputs, Mapping) and "loss" in outputs:
            loss = outputs["loss"]
        elif isinstance(outputs, Mapping):
            return  # training_step returned None: no loss this batch
        else:
            raise TypeError(f"SpikeDetection reads the loss from the step's outputs, a Tensor or a dict with 'loss'; "
                            f"got {type(outputs).__qualname__}")
        if self.exclude_batches_path is None:
            self.exclude_batches_path = os.path.join(trainer.default_root_dir, "skip_batches.json")
        elif not self.exclude_batches_path.endswith(".json"):
            self.exclude_batches_path = os.path.join(self.exclude_batches_path, "skip_batches.json")
        value = float(loss)  # the host-device sync
        spike = batch_idx >= self.warmup and self._is_spike(value)
        # Each process judges its own loss; one spike anywhere stops them all.
        if trainer.strategy.reduce_boolean_decision(spike, all=False):
            self._handle_spike(trainer, batch_idx)
        if self.finite_only or trainer.strategy.reduce_boolean_decision(math.isfinite(value), all=True):
            self._recent.append(value)
            self.last_val = value

    def _is_spike(self, value: float) -> bool:
        if self.finite_only and not math.isfinite(value):
            return True
        difference = value - self.last_val
        if (difference <= 0) if self.mode == "min" else (difference >= 0):
            return False  # not worse than the previous loss
        mean = sum(self._recent) / len(self._recent) if self._recent else math.nan
        far_enough = self.atol is None or abs(value - mean) >= abs(self.atol)
        return far_enough and (self.rtol is None or abs(value - mean) >= abs(self.rtol * mean))

    def _handle_spike(self, trainer: "Trainer", batch_idx: int) -> None:
        # The batch before is skipped too: its update may be what made this loss jump.
        self.bad_batches.extend([batch_idx - 1, batch_idx])
        if trainer.is_global_zero:
            assert self.exclude_batches_path is not None
            os.makedirs(os.path.dirname(os.path.abspath(self.exclude_batches_path)), exist_ok=True)
            with open(self.exclude_batches_path, "w") as f:
                json.dump(self.bad_batches, f, indent=4)
        raise TrainingSpikeException(batch_idx=batch_idx)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"last_val": self.last_val, "mode": self.mode, "warmup": self.warmup, "atol": self.atol,
                "rtol": self.rtol, "bad_batches": list(self.bad_batches), "bad_batches_path": self.exclude_batches_path,
                "recent": list(self._recent)}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last_val = float(state_dict["last_val"])
        self.mode, self.warmup = state_dict["mode"], state_dict["warmup"]
        self.atol, self.rtol = state_dict["atol"], state_dict["rtol"]
        self.bad_batches = list(state_dict["bad_batches"])
        self.exclude_batches_path = state_dict["bad_batches_path"]
        self._recent = deque(state_dict.get("recent", []), maxlen=self.window)

"""EarlyStopping: end the fit when a monitored metric stops improving, crosses a threshold or becomes non-finite.

The check runs once per validation (at validation end), or at the train epoch end when validation runs once per
epoch (``check_on_train_epoch_end``). It only sets ``trainer.should_stop``; the loop stops at the next batch
boundary once ``min_epochs``/``min_steps`` are met.
"""

from __future__ import annotations

import logging
import math
from enum import Enum
from typing import TYPE_CHECKING, Any, Callable, Optional

import torch
from torch import Tensor
from typing_extensions import override

from fulmen.callbacks.callback import Callback
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer

log = logging.getLogger("fulmen")


class EarlyStoppingReason(Enum):
    """Why an EarlyStopping callback stopped the fit (``EarlyStopping.stopping_reason``)."""

    NOT_STOPPED = 0
    STOPPING_THRESHOLD = 1
    DIVERGENCE_THRESHOLD = 2
    PATIENCE_EXHAUSTED = 3
    NON_FINITE_METRIC = 4


class EarlyStopping(Callback):
    """Stop training when ``monitor`` has not improved for ``patience`` checks, as Lightning's EarlyStopping does.

    Args:
        monitor: the metric to watch, from ``trainer.callback_metrics`` (what ``self.log`` recorded).
        min_delta: the smallest change that counts as an improvement; a change of ``min_delta`` or less does not.
        patience: how many checks in a row without improvement end the fit. A check is one validation run (or one
            train epoch end), so with ``check_val_every_n_epoch=10`` and ``patience=3`` at least 40 epochs run.
        verbose: report each improvement (the reason for stopping is reported in any case).
        mode: "min" (lower is better) or "max".
        strict: raise if ``monitor`` was not logged; with False the check is skipped instead.
        check_finite: stop as soon as the metric is NaN or infinite.
        stopping_threshold: stop as soon as the metric is better than this value.
        divergence_threshold: stop as soon as the metric is worse than this value.
        check_on_train_epoch_end: check at the train epoch end (True) or at validation end (False); by default at
            the epoch end when validation runs exactly once per epoch.
        log_rank_zero_only: in a multi-process run, report from rank zero only.

    After the fit, ``stopped_epoch``, ``stopping_reason`` (an ``EarlyStoppingReason``) and
    ``stopping_reason_message`` say whether and why it stopped. Its state (counter, best score, reason) is saved in
    checkpoints, so a resumed fit keeps counting.
    """

    mode_dict: dict[str, Callable[[Tensor, Any], Tensor]] = {"min": torch.lt, "max": torch.gt}
    order_dict = {"min": "<", "max": ">"}
    _runs_after_module_epoch_end = True

    def __init__(
        self,
        monitor: str,
        min_delta: float = 0.0,
        patience: int = 3,
        verbose: bool = False,
        mode: str = "min",
        strict: bool = True,
        check_finite: bool = True,
        stopping_threshold: Optional[float] = None,
        divergence_threshold: Optional[float] = None,
        check_on_train_epoch_end: Optional[bool] = None,
        log_rank_zero_only: bool = False,
    ) -> None:
        if mode not in self.mode_dict:
            raise MisconfigurationException(f"EarlyStopping(mode={mode!r}) is not supported; choose 'min' or 'max'")
        if not isinstance(monitor, str) or not monitor:
            raise MisconfigurationException(
                f"EarlyStopping(monitor={monitor!r}) must name a logged metric, e.g. EarlyStopping(monitor='val_loss')")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise MisconfigurationException(f"EarlyStopping(patience={patience!r}) must be an int >= 0")
        self.monitor = monitor
        self.patience = patience
        self.verbose = verbose
        self.mode = mode
        self.strict = strict
        self.check_finite = check_finite
        self.stopping_threshold = stopping_threshold
        self.divergence_threshold = divergence_threshold
        self.log_rank_zero_only = log_rank_zero_only
        self._check_on_train_epoch_end_arg = check_on_train_epoch_end
        self._check_on_train_epoch_end = check_on_train_epoch_end
        # Signed as in Lightning (negative in "min" mode), so that "current - min_delta beats best" reads the same
        # way in both modes.
        self.min_delta = abs(min_delta) if mode == "max" else -abs(min_delta)
        self.wait_count = 0
        self.stopped_epoch = 0
        self.best_score = torch.tensor(math.inf if mode == "min" else -math.inf)
        self.stopping_reason = EarlyStoppingReason.NOT_STOPPED
        self.stopping_reason_message: Optional[str] = None

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor, mode=self.mode)

    @property
    def monitor_op(self) -> Callable[[Tensor, Any], Tensor]:
        """``torch.lt`` in "min" mode, ``torch.gt`` in "max" mode: whether the first value is the better one."""
        return self.mode_dict[self.mode]

    # ------------------------------------------------------------------------------------------ hooks
    @override
    def setup(self, trainer: "Trainer", pl_module: Any, stage: str) -> None:
        if self._check_on_train_epoch_end_arg is None:
            self._check_on_train_epoch_end = (trainer.val_check_interval == 1.0
                                              and trainer.check_val_every_n_epoch == 1)

    @override
    def on_train_epoch_end(self, trainer: "Trainer", pl_module: Any) -> None:
        if self._check_on_train_epoch_end and not self._skip(trainer):
            self._run_early_stopping_check(trainer)

    @override
    def on_validation_end(self, trainer: "Trainer", pl_module: Any) -> None:
        if not self._check_on_train_epoch_end and not self._skip(trainer):
            self._run_early_stopping_check(trainer)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "wait_count": self.wait_count, "stopped_epoch": self.stopped_epoch, "best_score": self.best_score,
            "patience": self.patience, "stopping_reason": self.stopping_reason.value,
            "stopping_reason_message": self.stopping_reason_message,
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.wait_count = state_dict["wait_count"]
        self.stopped_epoch = state_dict["stopped_epoch"]
        self.best_score = state_dict["best_score"]
        self.patience = state_dict["patience"]
        # Checkpoints from before Lightning 2.6 have no reason.
        self.stopping_reason = EarlyStoppingReason(state_dict.get("stopping_reason", 0))
        self.stopping_reason_message = state_dict.get("stopping_reason_message")

    # ------------------------------------------------------------------------------------------ the check
    @staticmethod
    def _skip(trainer: "Trainer") -> bool:
        return trainer.state.fn != "fit" or trainer.sanity_checking or bool(trainer.fast_dev_run)

    def _run_early_stopping_check(self, trainer: "Trainer") -> None:
        metrics = trainer.callback_metrics
        value = metrics.get(self.monitor)
        if value is None:
            message = (f"EarlyStopping(monitor={self.monitor!r}) found no such metric; logged metrics: "
                       f"{sorted(metrics)}. Log it with self.log({self.monitor!r}, value) or change monitor")
            if self.strict:
                raise RuntimeError(message + " (or pass strict=False to skip the check when it is missing)")
            if self.verbose:
                rank_zero_warn(message, category=RuntimeWarning)
            return
        current = torch.as_tensor(value).detach().squeeze()
        should_stop, reason = self._evaluate_stopping_criteria(current)
        # One rank seeing a reason to stop is enough: every rank must stop at the same step.
        should_stop = trainer.strategy.reduce_boolean_decision(should_stop, all=False)
        trainer.should_stop = trainer.should_stop or should_stop
        if should_stop:
            self.stopped_epoch = trainer.current_epoch
            self.stopping_reason_message = reason
        if reason and (self.verbose or should_stop):
            self._log_info(trainer, reason)

    def _evaluate_stopping_criteria(self, current: Tensor) -> tuple[bool, Optional[str]]:
        """(stop?, why) for a new value of the metric; updates the best score, the counter and the reason."""
        order = self.order_dict[self.mode]
        if self.check_finite and not torch.isfinite(current):
            self.stopping_reason = EarlyStoppingReason.NON_FINITE_METRIC
            return True, (f"EarlyStopping: {self.monitor} = {current.item()} is not finite (best so far "
                          f"{self.best_score.item():.3f}); stopping the fit")
        if self.stopping_threshold is not None and self.monitor_op(current, self.stopping_threshold):
            self.stopping_reason = EarlyStoppingReason.STOPPING_THRESHOLD
            return True, (f"EarlyStopping: {self.monitor} = {current.item():.6g} {order} stopping_threshold="
                          f"{self.stopping_threshold}; stopping the fit")
        if self.divergence_threshold is not None and self.monitor_op(-current, -self.divergence_threshold):
            self.stopping_reason = EarlyStoppingReason.DIVERGENCE_THRESHOLD
            worse = ">" if self.mode == "min" else "<"
            return True, (f"EarlyStopping: {self.monitor} = {current.item():.6g} {worse} divergence_threshold="
                          f"{self.divergence_threshold}; stopping the fit")
        best = self.best_score.to(current.device)
        if self.monitor_op(current - self.min_delta, best):
            if torch.isfinite(best):
                reason = (f"EarlyStopping: {self.monitor} improved by {abs(best - current).item():.3f} (min_delta "
                          f"{abs(self.min_delta)}) to {current.item():.3f}")
            else:
                reason = f"EarlyStopping: {self.monitor} = {current.item():.3f}, the first best score"
            self.best_score = current
            self.wait_count = 0
            return False, reason
        self.wait_count += 1
        if self.wait_count >= self.patience:
            self.stopping_reason = EarlyStoppingReason.PATIENCE_EXHAUSTED
            return True, (f"EarlyStopping: {self.monitor} did not improve in the last {self.wait_count} "
                          f"check{'s' if self.wait_count != 1 else ''} "
                          f"(patience={self.patience}, best {self.best_score.item():.3f}); stopping the fit")
        return False, None

    def _log_info(self, trainer: "Trainer", message: str) -> None:
        rank = trainer.global_rank if trainer.world_size > 1 else None
        if rank is None:
            log.info(message)
        elif rank == 0 or not self.log_rank_zero_only:
            log.info(f"[rank: {rank}] {message}")

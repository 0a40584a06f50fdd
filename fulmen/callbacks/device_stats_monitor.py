"""DeviceStatsMonitor: log the accelerator's memory counters (and the CPU's load) around training and eval batches."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional
from typing_extensions import override

from fulmen.accelerators.cpu import get_cpu_stats as cpu_stats
from fulmen.accelerators.registry import device_stats
from fulmen.callbacks.callback import Callback
from fulmen.loops.rules import should_log_step
from fulmen.utilities.exceptions import MisconfigurationException

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer


class DeviceStatsMonitor(Callback):
    """Log device statistics at the start and end of training, validation and test batches, as Lightning does.

    Keys are ``DeviceStatsMonitor.<hook>/<stat>`` (the logger's group separator in place of ``/``), such as
    ``DeviceStatsMonitor.on_train_batch_end/allocated_bytes.all.current`` on CUDA (every counter of
    ``torch.cuda.memory_stats``) or ``.../cpu_percent`` on the CPU. They are logged on the batches that
    ``log_every_n_steps`` selects (in evaluation, every that many batches of the run), at the training step axis.

    Args:
        cpu_stats: also log the CPU's load, memory and swap use (psutil) next to a GPU's statistics; None: only when
            the accelerator is the CPU; False: never (on the CPU nothing is logged then).
    """

    def __init__(self, cpu_stats: Optional[bool] = None) -> None:
        if cpu_stats not in (None, True, False):
            raise TypeError(f"DeviceStatsMonitor(cpu_stats={cpu_stats!r}) must be True, False or None")
        self._cpu_stats = cpu_stats
        self._eval_batches = 0  # batches of the running evaluation: which of them log

    @override
    def setup(self, trainer: "Trainer", pl_module: Any, stage: str) -> None:
        if stage != "fit":
            return
        if not trainer.loggers:
            raise MisconfigurationException("DeviceStatsMonitor needs a logger, but Trainer(logger=False); pass "
                                            "logger=True (the default) or a logger, or remove the callback")
        if self._cpu_stats or (self._cpu_stats is None and trainer.strategy.root_device.type == "cpu"):
            cpu_stats()  # psutil missing: say so now, not at the first logged batch

    @override
    def on_train_batch_start(self, trainer: "Trainer", pl_module: Any, batch: Any, batch_idx: int) -> None:
        if should_log_step(trainer):
            self._log(trainer, "on_train_batch_start")

    @override
    def on_train_batch_end(self, trainer: "Trainer", pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if should_log_step(trainer):
            self._log(trainer, "on_train_batch_end")

    @override
    def on_validation_start(self, trainer: "Trainer", pl_module: Any) -> None:
        self._eval_batches = 0

    @override
    def on_validation_batch_start(self, trainer: "Trainer", pl_module: Any, batch: Any, batch_idx: int,
                                  dataloader_idx: int = 0) -> None:
        self._eval_batches += 1
        if self._eval_step_logs(trainer):
            self._log(trainer, "on_validation_batch_start")

    @override
    def on_validation_batch_end(self, trainer: "Trainer", pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        if self._eval_step_logs(trainer):
            self._log(trainer, "on_validation_batch_end")

    @override
    def on_test_start(self, trainer: "Trainer", pl_module: Any) -> None:
        self._eval_batches = 0

    @override
    def on_test_batch_start(self, trainer: "Trainer", pl_module: Any, batch: Any, batch_idx: int,
                            dataloader_idx: int = 0) -> None:
        self._eval_batches += 1
        if self._eval_step_logs(trainer):
            self._log(trainer, "on_test_batch_start")

    @override
    def on_test_batch_end(self, trainer: "Trainer", pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                          dataloader_idx: int = 0) -> None:
        if self._eval_step_logs(trainer):
            self._log(trainer, "on_test_batch_end")

    def _eval_step_logs(self, trainer: "Trainer") -> bool:
        every = trainer.log_every_n_steps
        return bool(every) and (self._eval_batches % every == 0 or trainer.should_stop)

    def _log(self, trainer: "Trainer", hook: str) -> None:
        device = trainer.strategy.root_device
        if self._cpu_stats is False and device.type == "cpu":
            return
        stats = device_stats(device)
        if self._cpu_stats and device.type != "cpu":
            stats.update(cpu_stats())
        prefix = f"{type(self).__qualname__}.{hook}"
        for logger in trainer.loggers:
            logger.log_metrics({f"{prefix}{logger.group_separator}{k}": v for k, v in stats.items()},
                               step=trainer.state.batches_that_stepped)

"""StochasticWeightAveraging: from a chosen epoch on, train with the SWA learning-rate schedule and average the
weights at each epoch start; at the end the model takes the averaged weights (with its batch-norm statistics
re-estimated for them in one extra epoch)."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import SWALR
from typing_extensions import override

from fulmen.callbacks.callback import Callback
from fulmen.core.optimizer import LRSchedulerConfig
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_info, rank_zero_warn

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer

AverageFn = Callable[[Tensor, Tensor, Tensor], Tensor]


class StochasticWeightAveraging(Callback):
    """Stochastic Weight Averaging (Izmailov et al., 2018), with Lightning's arguments and schedule.

    From epoch ``swa_epoch_start`` on, the learning rate follows ``torch.optim.swa_utils.SWALR`` (annealed to
    ``swa_lrs`` over ``annealing_epochs``; it replaces the module's scheduler), and at the start of each of those
    epochs the current weights join a running average. When training ends, the model takes the averaged weights. If
    the model has batch norm, one extra epoch (``max_epochs + 1``) runs ``training_step`` without backward or
    optimizer step, so that the batch-norm statistics are re-estimated for the averaged weights.

    Args:
        swa_lrs: the SWA learning rate, one float for every parameter group or a list with one per group.
        swa_epoch_start: the (1-based) epoch to start from, or a fraction of ``max_epochs``.
        annealing_epochs: epochs of annealing from the current learning rate to ``swa_lrs``.
        annealing_strategy: "cos" or "linear".
        avg_fn: ``avg_fn(averaged, current, n_averaged) -> new averaged``; default: the equal-weight mean.
        device: where the averaged copy lives ("cpu" by default; None: the model's device).

    Exact resume (a fulmen addition): the average, its count and the SWA scheduler are in the callback's state, as in
    Lightning, and so is whether the batch-norm epoch is under way, so a run resumed inside it continues the
    statistics instead of restarting them.
    """

    def __init__(self, swa_lrs: Union[float, list[float]], swa_epoch_start: Union[int, float] = 0.8,
                 annealing_epochs: int = 10, annealing_strategy: str = "cos", avg_fn: Optional[AverageFn] = None,
                 device: Optional[Union[torch.device, str]] = torch.device("cpu")) -> None:
        if isinstance(swa_epoch_start, bool) or not isinstance(swa_epoch_start, (int, float)) or (
                isinstance(swa_epoch_start, int) and swa_epoch_start < 1) or (
                isinstance(swa_epoch_start, float) and not 0 <= swa_epoch_start <= 1):
            raise MisconfigurationException(
                f"StochasticWeightAveraging(swa_epoch_start={swa_epoch_start!r}): pass an epoch number >= 1 (an int) "
                "or a fraction of max_epochs between 0 and 1 (a float)")
        lrs = swa_lrs if isinstance(swa_lrs, list) else [swa_lrs]
        if not isinstance(swa_lrs, (float, list)) or not lrs or not all(
                isinstance(lr, float) and lr > 0 for lr in lrs):
            raise MisconfigurationException(
                f"StochasticWeightAveraging(swa_lrs={swa_lrs!r}): pass a positive float, or a list of positive "
                "floats (one per parameter group)")
        if annealing_strategy not in ("cos", "linear"):
            raise MisconfigurationException(
                f"StochasticWeightAveraging(annealing_strategy={annealing_strategy!r}): pass 'cos' or 'linear'")
        if avg_fn is not None and not callable(avg_fn):
            raise MisconfigurationException(
                f"StochasticWeightAveraging(avg_fn={avg_fn!r}): pass a function (averaged, current, n_averaged) -> "
                "averaged, or None for the equal-weight mean")
        if device is not None and not isinstance(device, (torch.device, str)):
            raise MisconfigurationException(
                f"StochasticWeightAveraging(device={device!r}): pass a torch.device, a string such as 'cpu', or None")
        self._swa_epoch_start = swa_epoch_start
        self._swa_lrs = swa_lrs
        self._annealing_epochs = annealing_epochs
        self._annealing_strategy = annealing_strategy
        self._avg_fn = avg_fn or self.avg_fn
        self._device = device
        self.n_averaged: Optional[Tensor] = None
        self.momenta: dict[nn.Module, Optional[float]] = {}
        self._average_model: Optional[nn.Module] = None
        self._swa_scheduler: Optional[SWALR] = None
        self._scheduler_state: Optional[dict[str, Any]] = None
        self._initialized = False
        self._init_n_averaged = 0
        self._latest_update_epoch = -1
        self._max_epochs = -1
        self._model_contains_batch_norm = False
        self._batch_norm_update = False  # the extra epoch is under way: the model holds the averaged weights
        self._train_step_fn: Optional[Callable[..., Any]] = None

    @property
    def swa_start(self) -> int:
        """The first SWA epoch, 0-based."""
        return max(int(self._swa_epoch_start) - 1, 0)

    @property
    def swa_end(self) -> float:
        """The last SWA epoch, 0-based (infinite with ``max_epochs=-1``)."""
        return float("inf") if self._max_epochs == -1 else self._max_epochs - 1

    @staticmethod
    def pl_module_contains_batch_norm(pl_module: nn.Module) -> bool:
        """Whether the model has a batch-norm layer (and so needs the extra epoch)."""
        return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in pl_module.modules())

    # ------------------------------------------------------------------------------------------ hooks
    @override
    def setup(self, trainer: "Trainer", pl_module: Any, stage: str) -> None:
        if stage == "fit":
            self._average_model = copy.deepcopy(pl_module)

    @override
    def on_fit_start(self, trainer: "Trainer", pl_module: Any) -> None:
        if len(trainer.optimizers) != 1:
            raise MisconfigurationException(
                f"StochasticWeightAveraging works with one optimizer; configure_optimizers returned "
                f"{len(trainer.optimizers)}")
        if len(trainer.lr_scheduler_configs) > 1:
            raise MisconfigurationException(
                f"StochasticWeightAveraging replaces the LR scheduler, so it works with at most one; "
                f"configure_optimizers returned {len(trainer.lr_scheduler_configs)}")
        if isinstance(self._swa_epoch_start, float):
            if trainer.max_epochs == -1:
                raise MisconfigurationException(
                    f"StochasticWeightAveraging(swa_epoch_start={self._swa_epoch_start}) is a fraction of max_epochs, "
                    "but max_epochs=-1; pass the start epoch as an int")
            self._swa_epoch_start = int(trainer.max_epochs * self._swa_epoch_start)
        self._model_contains_batch_norm = self.pl_module_contains_batch_norm(pl_module)
        self._max_epochs = trainer.max_epochs
        if self._model_contains_batch_norm and trainer.max_epochs != -1:
            if not pl_module.automatic_optimization:
                raise MisconfigurationException(
                    "StochasticWeightAveraging re-estimates batch-norm statistics in an extra epoch that runs "
                    "training_step without optimizer steps, which manual optimization cannot do; use automatic "
                    "optimization, or a model without batch norm")
            trainer.max_epochs += 1  # the batch-norm epoch
        if self._scheduler_state is not None:
            # The SWA scheduler is made again (and its state loaded) when its first epoch starts.
            trainer.lr_scheduler_configs.clear()

    @override
    def on_train_epoch_start(self, trainer: "Trainer", pl_module: Any) -> None:
        epoch = trainer.current_epoch
        if not self._initialized and self.swa_start <= epoch <= self.swa_end:
            self._initialized = True
            self._start_swa(trainer, pl_module)
        if self.swa_start <= epoch <= self.swa_end and epoch > self._latest_update_epoch:
            assert self.n_averaged is not None and self._average_model is not None
            self.update_parameters(self._average_model, pl_module, self.n_averaged, self._avg_fn)
            self._latest_update_epoch = epoch
        if self._max_epochs != -1 and epoch == self.swa_end + 1:
            if self._batch_norm_update:  # resumed inside the batch-norm epoch: keep the statistics gathered so far
                self._cumulative_batch_norm(pl_module)
            else:
                assert self._average_model is not None
                self.transfer_weights(self._average_model, pl_module)
                self.reset_batch_norm_and_save_state(pl_module)
                self._batch_norm_update = True
            from fulmen.loops.optimization.automatic import forward_only_step

            self._train_step_fn, trainer._step_fn = trainer._step_fn, forward_only_step

    @override
    def on_train_epoch_end(self, trainer: "Trainer", pl_module: Any) -> None:
        if self._train_step_fn is not None:
            trainer._step_fn, self._train_step_fn = self._train_step_fn, None

    @override
    def on_train_end(self, trainer: "Trainer", pl_module: Any) -> None:
        # The epoch counter has already moved past the last epoch here.
        if self._model_contains_batch_norm and self._max_epochs != -1 and trainer.current_epoch - 1 == self.swa_end + 1:
            self.reset_momenta()
            self._batch_norm_update = False
        elif trainer.current_epoch - 1 == self.swa_end or self._max_epochs == -1:
            if self._average_model is not None:
                self.transfer_weights(self._average_model, pl_module)
        if self._model_contains_batch_norm and self._max_epochs != -1:
            trainer.max_epochs = self._max_epochs

    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "n_averaged": 0 if self.n_averaged is None else int(self.n_averaged.item()),
            "latest_update_epoch": self._latest_update_epoch,
            "scheduler_state": None if self._swa_scheduler is None else self._swa_scheduler.state_dict(),
            "average_model_state": None if self._average_model is None else self._average_model.state_dict(),
            "batch_norm_update": self._batch_norm_update,
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._init_n_averaged = state_dict["n_averaged"]
        self._latest_update_epoch = state_dict["latest_update_epoch"]
        self._scheduler_state = state_dict["scheduler_state"]
        self._batch_norm_update = state_dict.get("batch_norm_update", False)
        if self._average_model is not None and state_dict["average_model_state"] is not None:
            self._average_model.load_state_dict(state_dict["average_model_state"])

    @override
    def on_load_checkpoint(self, trainer: "Trainer", pl_module: Any, checkpoint: dict[str, Any]) -> None:
        state = (checkpoint.get("callbacks") or {}).get(self.state_key) or {}
        if state.get("scheduler_state") is not None:
            # The checkpoint's scheduler is this callback's SWALR, which it restores itself from its own state once
            # SWA starts again; the module's scheduler is set aside (on_fit_start) and gets no state.
            checkpoint["lr_schedulers"] = []

    # ------------------------------------------------------------------------------------------ averaging
    @staticmethod
    def transfer_weights(src_pl_module: nn.Module, dst_pl_module: nn.Module) -> None:
        """Copy the parameters of ``src_pl_module`` into ``dst_pl_module``."""
        for src, dst in zip(src_pl_module.parameters(), dst_pl_module.parameters()):
            dst.detach().copy_(src.to(dst.device))

    @staticmethod
    def update_parameters(average_model: nn.Module, model: nn.Module, n_averaged: Tensor, avg_fn: AverageFn) -> None:
        """Take ``model``'s parameters into the average (the first time, copy them)."""
        first = int(n_averaged) == 0  # once per epoch: this read of the counter may wait for the device
        for p_average, p_model in zip(average_model.parameters(), model.parameters()):
            device = p_average.device
            average, current = p_average.detach(), p_model.detach().to(device)
            average.copy_(current if first else avg_fn(average, current, n_averaged.to(device)))
        n_averaged += 1

    @staticmethod
    def avg_fn(averaged_model_parameter: Tensor, model_parameter: Tensor, num_averaged: Tensor) -> Tensor:
        """The equal-weight running mean."""
        return averaged_model_parameter + (model_parameter - averaged_model_parameter) / (num_averaged + 1)

    def reset_batch_norm_and_save_state(self, pl_module: nn.Module) -> None:
        """Zero the batch-norm running statistics and switch them to a cumulative average (momentum None), keeping
        the momenta to put back afterwards."""
        for module in pl_module.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
                module.running_mean = torch.zeros_like(module.running_mean)
                module.running_var = torch.ones_like(module.running_var)
                module.num_batches_tracked *= 0
        self._cumulative_batch_norm(pl_module)

    def reset_momenta(self) -> None:
        """Put back the batch-norm momenta that ``reset_batch_norm_and_save_state`` replaced."""
        for module, momentum in self.momenta.items():
            module.momentum = momentum
        self.momenta = {}

    # ------------------------------------------------------------------------------------------ internals
    def _cumulative_batch_norm(self, pl_module: nn.Module) -> None:
        self.momenta = {}
        for module in pl_module.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
                self.momenta[module] = module.momentum
                module.momentum = None

    def _start_swa(self, trainer: "Trainer", pl_module: Any) -> None:
        """Move the average to its device and put the SWA scheduler in place of the module's."""
        assert self._average_model is not None
        self._average_model = self._average_model.to(self._device or pl_module.device)
        optimizer = trainer.optimizers[0]
        if isinstance(self._swa_lrs, float):
            self._swa_lrs = [self._swa_lrs] * len(optimizer.param_groups)
        if len(self._swa_lrs) != len(optimizer.param_groups):
            raise MisconfigurationException(
                f"StochasticWeightAveraging(swa_lrs={self._swa_lrs}) has {len(self._swa_lrs)} learning rates, but "
                f"the optimizer has {len(optimizer.param_groups)} parameter groups; pass one per group, or one float")
        for lr, group in zip(self._swa_lrs, optimizer.param_groups):
            group["initial_lr"] = lr
        # As in Lightning: with "cos", the scheduler starts as if resumed at max_epochs (its first step keeps the
        # learning rate as it is).
        self._swa_scheduler = SWALR(optimizer, swa_lr=self._swa_lrs, anneal_epochs=self._annealing_epochs,
                                    anneal_strategy=self._annealing_strategy,  # type: ignore[arg-type]
                                    last_epoch=trainer.max_epochs if self._annealing_strategy == "cos" else -1)
        if self._scheduler_state is not None:
            self._swa_scheduler.load_state_dict(self._scheduler_state)
        elif trainer.current_epoch != self.swa_start:
            rank_zero_warn("StochasticWeightAveraging starts after swa_epoch_start without saved SWA state (a "
                           "checkpoint written without this callback?): the schedule starts from here")
        config = LRSchedulerConfig(self._swa_scheduler)
        if trainer.lr_scheduler_configs:
            previous = trainer.lr_scheduler_configs[0]
            if previous.interval != "epoch" or previous.frequency != 1:
                rank_zero_warn(f"StochasticWeightAveraging steps its scheduler every epoch; the module's "
                               f"scheduler stepped every {previous.frequency} {previous.interval}(s)")
            rank_zero_info(f"Swapping scheduler `{type(previous.scheduler).__name__}` for `SWALR`")
            trainer.lr_scheduler_configs[0] = config
        else:
            trainer.lr_scheduler_configs.append(config)
        if self.n_averaged is None:
            self.n_averaged = torch.tensor(self._init_n_averaged, dtype=torch.long, device=pl_module.device)

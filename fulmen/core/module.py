"""LightningModule: the model, its steps, its optimizers and the hooks a user may override."""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Mapping
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from typing_extensions import override

from fulmen.core.hooks import CheckpointHooks, DataHooks, ModelHooks
from fulmen.core.optimizer import LightningOptimizer
from fulmen.core.mixins.hparams_mixin import HyperparametersMixin
from fulmen.core.saving import _class_only
from fulmen.logging import is_metric, log_value
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer


# What ``LightningModule.optimizers()`` returns: one optimizer, or a list of them.
MODULE_OPTIMIZERS = Union[Optimizer, LightningOptimizer, list[Optimizer], list[LightningOptimizer]]


class LightningModule(HyperparametersMixin, ModelHooks, DataHooks, CheckpointHooks, nn.Module):
    """A ``torch.nn.Module`` that also knows how to train: override ``training_step`` and
    ``configure_optimizers``, then hand it to ``fulmen.Trainer``.

    Steps: ``training_step``, ``validation_step``, ``test_step``, ``predict_step``. Hooks: every ``on_*`` method of
    ``ModelHooks``, ``DataHooks`` and ``CheckpointHooks`` (``fulmen.core.hooks``); each is called by the Trainer
    after the callbacks' hook of the same name.
    """

    CHECKPOINT_HYPER_PARAMS_KEY = "hyper_parameters"
    CHECKPOINT_HYPER_PARAMS_NAME = "hparams_name"
    CHECKPOINT_HYPER_PARAMS_TYPE = "hparams_type"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._trainer: Optional["Trainer"] = None
        self._current_fx_name: Optional[str] = None
        self._automatic_optimization = True
        self._strict_loading: Optional[bool] = None
        self._example_input_array: Any = None
        self._dtype_override: Optional[torch.dtype] = None
        self._toggled: Optional[dict[nn.Parameter, bool]] = None

    # ----------------------------------------------------------------------------------------------- properties
    @property
    def trainer(self) -> Any:
        """The Trainer this module is attached to; RuntimeError if there is none."""
        if self._trainer is None:
            raise RuntimeError(f"{type(self).__name__} is not attached to a `Trainer`.")
        return self._trainer

    @trainer.setter
    def trainer(self, trainer: "Trainer") -> None:
        for child in self.modules():
            if isinstance(child, LightningModule):
                child._trainer = trainer

    @property
    def device(self) -> torch.device:
        """The device of the module's first parameter or buffer (the Trainer's device while one is attached)."""
        if self._trainer is not None:
            return self._trainer.strategy.root_device
        for tensor in self.parameters():
            return tensor.device
        for tensor in self.buffers():
            return tensor.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the module's first floating-point parameter (or the default dtype)."""
        if self._dtype_override is not None:
            return self._dtype_override
        for p in self.parameters():
            if p.is_floating_point():
                return p.dtype
        return torch.get_default_dtype()

    @dtype.setter
    def dtype(self, value: torch.dtype) -> None:
        self._dtype_override = value

    @property
    def on_gpu(self) -> bool:
        """Whether the module's parameters are on a CUDA device."""
        return self.device.type == "cuda"

    @property
    def fabric(self) -> None:
        """Always None: fulmen runs without Lightning Fabric (kept for Lightning's API)."""
        return None

    @property
    def global_rank(self) -> int:
        """This process's rank among all processes of the run (0 without a Trainer)."""
        return self._trainer.global_rank if self._trainer is not None else 0

    @property
    def local_rank(self) -> int:
        """This process's rank on its machine (0 without a Trainer)."""
        return self._trainer.local_rank if self._trainer is not None else 0

    @property
    def current_epoch(self) -> int:
        """The Trainer's current epoch (0 without a Trainer)."""
        return self._trainer.current_epoch if self._trainer is not None else 0

    @property
    def global_step(self) -> int:
        """The number of optimizer steps taken so far (0 without a Trainer)."""
        return self._trainer.global_step if self._trainer is not None else 0

    @property
    def logger(self) -> Any:
        """The Trainer's first logger, or None."""
        return self._trainer.logger if self._trainer is not None else None

    @property
    def loggers(self) -> list[Any]:
        """All of the Trainer's loggers (an empty list without a Trainer)."""
        return self._trainer.loggers if self._trainer is not None else []

    @property
    def example_input_array(self) -> Any:
        """An example input of ``forward``, for the model summary's sizes and for ``to_onnx``; set it in
        ``__init__``."""
        return self._example_input_array

    @example_input_array.setter
    def example_input_array(self, value: Any) -> None:
        self._example_input_array = value

    @property
    def automatic_optimization(self) -> bool:
        """True (default): the Trainer steps the optimizer. False: ``training_step`` does it (manual optimization)."""
        return self._automatic_optimization

    @automatic_optimization.setter
    def automatic_optimization(self, value: bool) -> None:
        self._automatic_optimization = value

    @property
    def strict_loading(self) -> bool:
        """Whether loading a checkpoint requires its keys to match the module's exactly (True unless set)."""
        return True if self._strict_loading is None else self._strict_loading

    @strict_loading.setter
    def strict_loading(self, value: bool) -> None:
        self._strict_loading = value

    # ----------------------------------------------------------------------------------------------- logging
    def log(
        self,
        name: str,
        value: Any,
        prog_bar: bool = False,
        logger: Optional[bool] = None,
        on_step: Optional[bool] = None,
        on_epoch: Optional[bool] = None,
        reduce_fx: Union[str, Callable[..., Any]] = "mean",
        enable_graph: bool = False,
        sync_dist: bool = False,
        sync_dist_group: Optional[Any] = None,
        add_dataloader_idx: bool = True,
        batch_size: Optional[int] = None,
        metric_attribute: Optional[str] = None,
        rank_zero_only: bool = False,
    ) -> None:
        """Record a scalar (number, one-element tensor or torchmetrics Metric) under ``name``.

        ``on_step``/``on_epoch`` default by hook: step values in training hooks, epoch aggregates (``reduce_fx``,
        a batch-size-weighted mean by default) in validation and test hooks. The value stays on its device: it is
        read only when a logger flushes or the progress bar refreshes.
        """
        trainer = self._trainer
        if trainer is None:
            rank_zero_warn(f"self.log({name!r}) was called but the module is not attached to a Trainer; ignored")
            return
        if trainer.barebones:
            rank_zero_warn("self.log() does nothing under Trainer(barebones=True)")
            return
        log_value(self, trainer._results, name, value, prog_bar, logger, on_step, on_epoch, reduce_fx, enable_graph,
                  sync_dist, sync_dist_group, add_dataloader_idx, batch_size, metric_attribute, rank_zero_only)

    def log_dict(
        self,
        dictionary: Mapping[str, Any],
        prog_bar: bool = False,
        logger: Optional[bool] = None,
        on_step: Optional[bool] = None,
        on_epoch: Optional[bool] = None,
        reduce_fx: Union[str, Callable[..., Any]] = "mean",
        enable_graph: bool = False,
        sync_dist: bool = False,
        sync_dist_group: Optional[Any] = None,
        add_dataloader_idx: bool = True,
        batch_size: Optional[int] = None,
        rank_zero_only: bool = False,
    ) -> None:
        """``self.log`` each item of ``dictionary`` (a dict or a torchmetrics MetricCollection)."""
        if is_metric(dictionary) or not isinstance(dictionary, Mapping) and not hasattr(dictionary, "items"):
            raise TypeError(f"log_dict expects a dict or MetricCollection, got {type(dictionary).__name__}")
        for key, value in dictionary.items():
            self.log(key, value, prog_bar=prog_bar, logger=logger, on_step=on_step, on_epoch=on_epoch,
                     reduce_fx=reduce_fx, enable_graph=enable_graph, sync_dist=sync_dist,
                     sync_dist_group=sync_dist_group, add_dataloader_idx=add_dataloader_idx, batch_size=batch_size,
                     rank_zero_only=rank_zero_only)

    # ----------------------------------------------------------------------------------------------- steps
    @_class_only
    def load_from_checkpoint(
        cls,
        checkpoint_path: Union[str, Any],
        map_location: Any = None,
        hparams_file: Optional[Union[str, Any]] = None,
        strict: Optional[bool] = None,
        weights_only: Optional[bool] = None,
        **kwargs: Any,
    ) -> Any:
        """Build the module from the hyperparameters saved in a checkpoint (``kwargs`` override them), then load
        its weights. ``weights_only`` None/True loads safely (plain data only); False allows pickled objects.

        ``hparams_file`` (a YAML file) replaces the saved hyperparameters. ``strict`` (default
        ``strict_loading``) requires every key to match; False loads the keys that do.
        """
        from fulmen.core.saving import build_from_checkpoint

        return build_from_checkpoint(cls, checkpoint_path, map_location, hparams_file, strict, weights_only,
                                     kwargs)

    @override
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Same as ``nn.Module.forward``; override it."""
        return super().forward(*args, **kwargs)

    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        """Compute and return the training loss (a Tensor, a dict with "loss", or None to skip the batch)."""
        raise MisconfigurationException(
            f"{type(self).__name__} has no `training_step`; define training_step(self, batch, batch_idx) returning "
            "the loss to train with Trainer.fit"
        )

    def validation_step(self, *args: Any, **kwargs: Any) -> Any:
        """One validation batch; log metrics with ``self.log``."""

    def test_step(self, *args: Any, **kwargs: Any) -> Any:
        """One test batch; log metrics with ``self.log``."""

    def predict_step(self, *args: Any, **kwargs: Any) -> Any:
        """One prediction batch; returns ``self(batch)`` by default."""
        batch = kwargs.get("batch", args[0] if args else None)
        return self(batch)

    def configure_optimizers(self) -> Any:
        """Return the optimizer(s) and, optionally, learning-rate scheduler(s)."""
        raise MisconfigurationException(
            f"{type(self).__name__} has no `configure_optimizers`; define it to return an optimizer, e.g. "
            "torch.optim.Adam(self.parameters(), lr=1e-3)"
        )

    def configure_callbacks(self) -> Any:
        """Callbacks to add to the Trainer's; they replace Trainer callbacks of the same type."""
        return []

    # ----------------------------------------------------------------------------------------------- optimization
    def optimizers(self, use_pl_optimizer: bool = True) -> MODULE_OPTIMIZERS:
        """The optimizer(s) from ``configure_optimizers``, wrapped so ``step()`` goes through the Trainer."""
        trainer = self.trainer
        opts = trainer._lightning_optimizers if use_pl_optimizer else trainer.optimizers
        if len(opts) == 1:
            return opts[0]
        return list(opts)

    def lr_schedulers(self) -> Any:
        """The scheduler(s) from ``configure_optimizers``: None, one, or a list."""
        configs = self.trainer.lr_scheduler_configs
        if not configs:
            return None
        schedulers = [c.scheduler for c in configs]
        return schedulers[0] if len(schedulers) == 1 else schedulers

    def manual_backward(self, loss: Tensor, *args: Any, **kwargs: Any) -> None:
        """Under manual optimization, use this instead of ``loss.backward()``: it runs the backward hooks and
        applies mixed-precision loss scaling."""
        if self.automatic_optimization:
            raise MisconfigurationException(
                "manual_backward is for manual optimization; set `self.automatic_optimization = False` in "
                "__init__, or return the loss from training_step and let the Trainer call backward"
            )
        self.trainer.strategy.manual_backward(self.trainer, loss, *args, **kwargs)

    def backward(self, loss: Tensor, *args: Any, **kwargs: Any) -> None:
        """Compute gradients; override to customise (the loss is already scaled under mixed precision)."""
        loss.backward(*args, **kwargs)

    def toggle_optimizer(self, optimizer: Any) -> None:
        """Make only ``optimizer``'s parameters require gradients (for several optimizers under manual
        optimization); ``untoggle_optimizer`` restores them."""
        opt = getattr(optimizer, "optimizer", optimizer)
        own = {id(p) for group in opt.param_groups for p in group["params"]}
        state: dict[nn.Parameter, bool] = {}
        for other in self.trainer.optimizers:
            for group in other.param_groups:
                for p in group["params"]:
                    if p in state:
                        continue
                    state[p] = p.requires_grad
                    if id(p) not in own:
                        p.requires_grad = False
        self._toggled = state

    def untoggle_optimizer(self, optimizer: Any) -> None:
        """Undo ``toggle_optimizer``: restore every parameter's ``requires_grad``."""
        if self._toggled is not None:
            for p, requires_grad in self._toggled.items():
                p.requires_grad = requires_grad
        self._toggled = None

    @contextlib.contextmanager
    def toggled_optimizer(self, optimizer: Any) -> Generator[None, None, None]:
        """``toggle_optimizer`` for the duration of a ``with`` block."""
        self.toggle_optimizer(optimizer)
        try:
            yield
        finally:
            self.untoggle_optimizer(optimizer)

    def clip_gradients(
        self,
        optimizer: Any,
        gradient_clip_val: Optional[Union[int, float]] = None,
        gradient_clip_algorithm: Optional[str] = None,
    ) -> None:
        """Clip the gradients of ``optimizer``'s parameters by norm (default) or value.

        Unset arguments fall back to the Trainer's ``gradient_clip_val`` / ``gradient_clip_algorithm``.
        """
        trainer = self.trainer
        if trainer.strategy.clips_gradients_itself:
            raise MisconfigurationException(
                "clip_gradients under DeepSpeedStrategy: the engine holds the gradients (partitioned) and clips them "
                "in its step; set DeepSpeedStrategy(config={..., 'gradient_clipping': 1.0}) instead")
        if gradient_clip_val is None:
            gradient_clip_val = trainer.gradient_clip_val or 0.0
        elif trainer.gradient_clip_val is not None and trainer.gradient_clip_val != gradient_clip_val:
            raise MisconfigurationException(
                f"Trainer(gradient_clip_val={trainer.gradient_clip_val}) and clip_gradients(gradient_clip_val="
                f"{gradient_clip_val}) disagree; set it in one place only"
            )
        if gradient_clip_algorithm is None:
            gradient_clip_algorithm = trainer.gradient_clip_algorithm or "norm"
        elif trainer.gradient_clip_algorithm is not None and trainer.gradient_clip_algorithm != gradient_clip_algorithm:
            raise MisconfigurationException(
                f"Trainer(gradient_clip_algorithm={trainer.gradient_clip_algorithm!r}) and clip_gradients("
                f"gradient_clip_algorithm={gradient_clip_algorithm!r}) disagree; set it in one place only"
            )
        if not isinstance(gradient_clip_val, (int, float)) or isinstance(gradient_clip_val, bool):
            raise TypeError(f"gradient_clip_val={gradient_clip_val!r} must be an int or a float")
        algorithm = str(gradient_clip_algorithm).lower()
        if algorithm not in ("norm", "value"):
            raise MisconfigurationException(
                f"gradient_clip_algorithm={gradient_clip_algorithm!r} is not supported; use 'norm' or 'value'"
            )
        trainer.precision_plugin.clip_gradients(getattr(optimizer, "optimizer", optimizer), gradient_clip_val,
                                                algorithm)

    def configure_gradient_clipping(
        self,
        optimizer: Any,
        gradient_clip_val: Optional[Union[int, float]] = None,
        gradient_clip_algorithm: Optional[str] = None,
    ) -> None:
        """Called before each optimizer step with the Trainer's clipping settings; override to clip differently."""
        self.clip_gradients(optimizer, gradient_clip_val=gradient_clip_val,
                            gradient_clip_algorithm=gradient_clip_algorithm)

    def lr_scheduler_step(self, scheduler: Any, metric: Optional[Any]) -> None:
        """Step one scheduler (``metric`` is the monitored value for ReduceLROnPlateau)."""
        if metric is None:
            scheduler.step()
        else:
            scheduler.step(metric)

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any,
                       optimizer_closure: Optional[Callable[[], Any]] = None) -> None:
        """Step the optimizer; ``optimizer_closure`` runs training_step, zero_grad and backward.

        Overriding this makes the Trainer run ``training_step`` inside the closure, as Lightning does.
        """
        optimizer.step(closure=optimizer_closure)

    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer: Any) -> None:
        """Zero the gradients at the start of each accumulation window."""
        optimizer.zero_grad()

    # ----------------------------------------------------------------------------------------------- utilities
    def __getstate__(self) -> dict[str, Any]:
        # A copy or a pickle of the module leaves the Trainer behind (as in Lightning): a callback's deepcopy of the
        # model (weight averaging) would otherwise copy the trainer, its loaders and loggers with it.
        state = dict(self.__dict__)
        state["_trainer"] = None
        for name in state.pop("_compiler_ctx", None) or ():  # a copy runs the plain methods (compiled ones hold
            state.pop(name, None)                             # frames of this instance)
        return state

    def print(self, *args: Any, **kwargs: Any) -> None:
        """``print`` on global rank zero only; while a progress bar is drawn, through the bar (above it), so that
        the bar's line stays whole."""
        if self._trainer is not None:
            self._trainer.print(*args, **kwargs)
        elif self.global_rank == 0:
            print(*args, **kwargs)

    def freeze(self) -> None:
        """Stop gradients to every parameter and switch to eval mode."""
        for p in self.parameters():
            p.requires_grad = False
        self.eval()

    def unfreeze(self) -> None:
        """Undo ``freeze``: every parameter requires gradients again, and train mode is on."""
        for p in self.parameters():
            p.requires_grad = True
        self.train()

    def all_gather(self, data: Any, group: Optional[Any] = None, sync_grads: bool = False) -> Any:
        """Gather tensors (numbers become tensors) from every process, stacked on a new first dimension.

        On a single process the data comes back as it is, as in Lightning.
        """
        import numbers

        from fulmen.utilities.apply_to_collection import apply_to_collection

        data = apply_to_collection(data, numbers.Number, lambda x: torch.tensor(x, device=self.device))
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return data

        def gather(t: Tensor) -> Tensor:
            if sync_grads:
                # (imported as another name: `import torch.distributed.nn` here would make `torch` a local of this
                # function, unbound on the other path)
                from torch.distributed import nn as distributed_nn

                return torch.stack(distributed_nn.all_gather(t, group=group))
            out = [torch.zeros_like(t) for _ in range(torch.distributed.get_world_size(group))]
            torch.distributed.all_gather(out, t.contiguous(), group=group)
            return torch.stack(out)

        return apply_to_collection(data, Tensor, gather)

    def to_torchscript(self, file_path: Optional[str] = None, method: str = "script",
                       example_inputs: Optional[Any] = None, **kwargs: Any) -> Any:
        """Export with ``torch.jit.script`` or ``torch.jit.trace`` (eval mode); save to ``file_path`` if given."""
        mode = self.training
        self.eval()
        try:
            if method == "script":
                script = torch.jit.script(self, **kwargs)
            elif method == "trace":
                inputs = example_inputs if example_inputs is not None else self.example_input_array
                if inputs is None:
                    raise ValueError("to_torchscript(method='trace') needs example_inputs or example_input_array")
                script = torch.jit.trace(self, example_inputs=inputs, **kwargs)
            else:
                raise ValueError(f"to_torchscript(method={method!r}): use 'script' or 'trace'")
        finally:
            self.train(mode)
        if file_path is not None:
            torch.jit.save(script, file_path)
        return script

    def to_onnx(self, file_path: Any, input_sample: Optional[Any] = None, **kwargs: Any) -> None:
        """Export to ONNX with ``torch.onnx.export`` (eval mode)."""
        inputs = input_sample if input_sample is not None else self.example_input_array
        if inputs is None:
            raise ValueError("to_onnx needs input_sample or example_input_array")
        mode = self.training
        self.eval()
        try:
            torch.onnx.export(self, inputs, file_path, **kwargs)
        finally:
            self.train(mode)

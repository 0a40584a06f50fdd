"""Finetuning: freeze part of a model before training and unfreeze it later, adding its parameters to the
optimizer as a new parameter group (``BaseFinetuning``), or the ready-made schedule for a ``backbone``
(``BackboneFinetuning``)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim import Optimizer
from typing_extensions import override

from fulmen.callbacks.callback import Callback
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer

log = logging.getLogger("fulmen")
Modules = Union[nn.Module, Iterable[Union[nn.Module, Iterable[Any]]]]


def multiplicative(epoch: int) -> float:
    """BackboneFinetuning's default: double the backbone's learning rate every epoch (up to the head's)."""
    return 2.0


class BaseFinetuning(Callback):
    """Subclass and implement ``freeze_before_training(pl_module)`` (called in setup) and
    ``finetune_function(pl_module, epoch, optimizer)`` (called at the start of every epoch, for each optimizer), using
    the helpers ``freeze``, ``make_trainable`` and ``unfreeze_and_add_param_group``.

    The parameter groups added during training are recorded (by parameter name) in the callback's checkpoint state,
    and put back when a fit resumes, before the optimizer's saved state is loaded into them; so is which parameters
    were frozen (``frozen_parameters``, a fulmen addition: Lightning resumes with what ``freeze_before_training``
    froze, so an unfrozen backbone stays frozen after a resume).
    """

    def __init__(self) -> None:
        self._internal_optimizer_metadata: dict[int, list[dict[str, Any]]] = {}
        self._restarting = False
        self._frozen: Optional[list[str]] = None  # restored from a checkpoint, applied at fit start
        self._module: Any = None

    # ------------------------------------------------------------------------------------------ helpers
    @staticmethod
    def flatten_modules(modules: Modules) -> list[nn.Module]:
        """The leaf modules of ``modules`` (and the parents that hold parameters themselves)."""
        if isinstance(modules, nn.ModuleDict):
            modules = modules.values()
        if isinstance(modules, Iterable) and not isinstance(modules, nn.Module):
            found: list[nn.Module] = []
            for module in modules:
                found.extend(BaseFinetuning.flatten_modules(module))
            candidates: Iterable[nn.Module] = found
        else:
            candidates = modules.modules()  # type: ignore[union-attr]
        return [m for m in candidates if not list(m.children()) or m._parameters]

    @staticmethod
    def filter_params(modules: Modules, train_bn: bool = True, requires_grad: bool = True) -> Iterator[nn.Parameter]:
        """The parameters of ``modules`` whose ``requires_grad`` is ``requires_grad`` (batch-norm ones left out
        when ``train_bn`` is False)."""
        for module in BaseFinetuning.flatten_modules(modules):
            if isinstance(module, _BatchNorm) and not train_bn:
                continue
            for param in module.parameters(recurse=False):
                if param.requires_grad == requires_grad:
                    yield param

    @staticmethod
    def make_trainable(modules: Modules) -> None:
        """Let ``modules`` learn again (and batch-norm layers track their statistics)."""
        for module in BaseFinetuning.flatten_modules(modules):
            if isinstance(module, _BatchNorm):
                module.track_running_stats = True
            for param in module.parameters(recurse=False):
                param.requires_grad = True

    @staticmethod
    def freeze_module(module: nn.Module) -> None:
        """Stop ``module``'s own parameters from learning (and a batch-norm layer from tracking statistics)."""
        if isinstance(module, _BatchNorm):
            module.track_running_stats = False
        for param in module.parameters(recurse=False):
            param.requires_grad = False

    @staticmethod
    def freeze(modules: Modules, train_bn: bool = True) -> None:
        """Freeze ``modules``; with ``train_bn`` their batch-norm layers keep learning."""
        for module in BaseFinetuning.flatten_modules(modules):
            if isinstance(module, _BatchNorm) and train_bn:
                BaseFinetuning.make_trainable(module)
            else:
                BaseFinetuning.freeze_module(module)

    @staticmethod
    def filter_on_optimizer(optimizer: Optimizer, params: Iterable[nn.Parameter]) -> list[nn.Parameter]:
        """``params`` without those the optimizer already holds (with a warning naming the fix)."""
        params = list(params)
        held = {id(p) for group in optimizer.param_groups for p in group["params"]}
        fresh = [p for p in params if id(p) not in held]
        if len(fresh) != len(params):
            rank_zero_warn(f"{len(params) - len(fresh)} parameters to unfreeze are already in the optimizer and are "
                           "skipped; create the optimizer over the trainable parameters only: "
                           "torch.optim.X(filter(lambda p: p.requires_grad, self.parameters()), ...)")
        return fresh

    @staticmethod
    def unfreeze_and_add_param_group(modules: Modules, optimizer: Optimizer, lr: Optional[float] = None,
                                     initial_denom_lr: float = 10.0, train_bn: bool = True) -> None:
        """Make ``modules`` trainable and add their parameters to ``optimizer`` as a new group, with learning rate
        ``lr`` (default: the first group's divided by ``initial_denom_lr``)."""
        BaseFinetuning.make_trainable(modules)
        group_lr = optimizer.param_groups[0]["lr"] / initial_denom_lr if lr is None else float(lr)
        params = BaseFinetuning.filter_on_optimizer(
            optimizer, BaseFinetuning.filter_params(modules, train_bn=train_bn, requires_grad=True))
        if params:
            optimizer.add_param_group({"params": params, "lr": group_lr})

    # ------------------------------------------------------------------------------------------ hooks
    @override
    def setup(self, trainer: "Trainer", pl_module: Any, stage: str) -> None:
        self._module = pl_module
        self.freeze_before_training(pl_module)

    @override
    def on_fit_start(self, trainer: "Trainer", pl_module: Any) -> None:
        if self._restarting:
            # Rebuild the groups the saved optimizer state was written for (it is loaded right after this hook).
            named = dict(pl_module.named_parameters())
            added = set()
            for index, optimizer in enumerate(trainer.optimizers):
                groups = self._internal_optimizer_metadata.get(index)
                if groups:
                    added.update(name for g in groups[len(optimizer.param_groups):] for name in g["params"])
                    optimizer.param_groups = [{**g, "params": [named[name] for name in g["params"]]}
                                              for g in groups]
            if self._frozen is not None:
                frozen = set(self._frozen)
                for name, param in named.items():
                    param.requires_grad = name not in frozen
            else:  # a checkpoint without the record (Lightning's): the groups added later were trainable
                for name in added:
                    named[name].requires_grad = True
            self._restarting = False

    @override
    def on_train_epoch_start(self, trainer: "Trainer", pl_module: Any) -> None:
        for index, optimizer in enumerate(trainer.optimizers):
            before = len(optimizer.param_groups)
            self.finetune_function(pl_module, trainer.current_epoch, optimizer)
            self._record(pl_module, index, before, optimizer.param_groups)

    @override
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"internal_optimizer_metadata": self._internal_optimizer_metadata}
        if self._module is not None:
            state["frozen_parameters"] = [n for n, p in self._module.named_parameters() if not p.requires_grad]
        return state

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restarting = True
        self._internal_optimizer_metadata = state_dict.get("internal_optimizer_metadata", state_dict)
        self._frozen = state_dict.get("frozen_parameters")

    def finetune_function(self, pl_module: Any, epoch: int, optimizer: Optimizer) -> None:
        """Unfreeze (or change) what should train from ``epoch`` on."""
        raise NotImplementedError(f"{type(self).__name__} must implement finetune_function(pl_module, epoch, "
                                  "optimizer)")

    def freeze_before_training(self, pl_module: Any) -> None:
        """Freeze what should not train at first."""
        raise NotImplementedError(f"{type(self).__name__} must implement freeze_before_training(pl_module)")

    def _record(self, pl_module: Any, index: int, before: int, groups: list[dict[str, Any]]) -> None:
        names = {id(p): n for n, p in pl_module.named_parameters()}

        def by_name(group: dict[str, Any]) -> dict[str, Any]:
            return {**{k: v for k, v in group.items() if k != "params"},
                    "params": [names[id(p)] for p in group["params"]]}

        if index not in self._internal_optimizer_metadata:
            self._internal_optimizer_metadata[index] = [by_name(g) for g in groups]
        elif before != len(groups):
            self._internal_optimizer_metadata[index].extend(by_name(g) for g in groups[before:])


class BackboneFinetuning(BaseFinetuning):
    """Freeze ``pl_module.backbone``, unfreeze it at ``unfreeze_backbone_at_epoch`` with a learning rate of
    ``backbone_initial_lr`` (or ``backbone_initial_ratio_lr`` times the optimizer's), then multiply it by
    ``lambda_func(epoch + 1)`` every epoch, capped at the first group's rate when ``should_align``."""

    def __init__(self, unfreeze_backbone_at_epoch: int = 10, lambda_func: Callable[[int], float] = multiplicative,
                 backbone_initial_ratio_lr: float = 10e-2, backbone_initial_lr: Optional[float] = None,
                 should_align: bool = True, initial_denom_lr: float = 10.0, train_bn: bool = True,
                 verbose: bool = False, rounding: int = 12) -> None:
        super().__init__()
        self.unfreeze_backbone_at_epoch = unfreeze_backbone_at_epoch
        self.lambda_func = lambda_func
        self.backbone_initial_ratio_lr = backbone_initial_ratio_lr
        self.backbone_initial_lr = backbone_initial_lr
        self.should_align = should_align
        self.initial_denom_lr = initial_denom_lr
        self.train_bn = train_bn
        self.verbose = verbose
        self.rounding = rounding
        self.previous_backbone_lr: Optional[float] = None

    @override
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "previous_backbone_lr": self.previous_backbone_lr}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.previous_backbone_lr = state_dict["previous_backbone_lr"]
        super().load_state_dict(state_dict)

    @override
    def freeze_before_training(self, pl_module: Any) -> None:
        # Checked here, in setup, so the run stops before any training with a message rather than an AttributeError.
        if not isinstance(getattr(pl_module, "backbone", None), nn.Module):
            raise MisconfigurationException(
                f"BackboneFinetuning needs {type(pl_module).__name__}.backbone, an nn.Module holding the layers to "
                "unfreeze later; add it, or subclass BaseFinetuning for another layout")
        self.freeze(pl_module.backbone)

    @override
    def finetune_function(self, pl_module: Any, epoch: int, optimizer: Optimizer) -> None:
        current = optimizer.param_groups[0]["lr"]
        if epoch == self.unfreeze_backbone_at_epoch:
            backbone_lr = (self.backbone_initial_lr if self.backbone_initial_lr is not None
                           else current * self.backbone_initial_ratio_lr)
            self.previous_backbone_lr = backbone_lr
            self.unfreeze_and_add_param_group(pl_module.backbone, optimizer, backbone_lr, train_bn=self.train_bn,
                                              initial_denom_lr=self.initial_denom_lr)
        elif epoch > self.unfreeze_backbone_at_epoch and self.previous_backbone_lr is not None:
            backbone_lr = self.lambda_func(epoch + 1) * self.previous_backbone_lr
            if self.should_align and backbone_lr > current:
                backbone_lr = current
            optimizer.param_groups[-1]["lr"] = backbone_lr
            self.previous_backbone_lr = backbone_lr
        else:
            return
        if self.verbose:
            log.info(f"Current lr: {round(current, self.rounding)}, "
                     f"Backbone lr: {round(self.previous_backbone_lr, self.rounding)}")

"""ModelPruning: prune weights with ``torch.nn.utils.prune`` at the end of epochs, optionally resetting the ones left
to their initial values (the lottery ticket hypothesis), and save checkpoints with the pruning applied."""

from __future__ import annotations

import copy
import inspect
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

import torch.nn.utils.prune as torch_prune
from torch import Tensor, nn
from typing_extensions import override

from fulmen.callbacks.callback import Callback
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_only

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer

log = logging.getLogger("fulmen")

ParameterList = Sequence[tuple[nn.Module, str]]

# name -> (the function that prunes one tensor, the method class that global_unstructured takes)
_METHODS: dict[str, tuple[Callable[..., Any], type[torch_prune.BasePruningMethod]]] = {
    "l1_unstructured": (torch_prune.l1_unstructured, torch_prune.L1Unstructured),
    "random_unstructured": (torch_prune.random_unstructured, torch_prune.RandomUnstructured),
    "ln_structured": (torch_prune.ln_structured, torch_prune.LnStructured),
    "random_structured": (torch_prune.random_structured, torch_prune.RandomStructured),
}


def _is_container(module: nn.Module) -> bool:
    from fulmen.core.module import LightningModule

    return isinstance(module, (LightningModule, nn.Sequential, nn.ModuleList, nn.ModuleDict))


class ModelPruning(Callback):
    """Prune as Lightning's ModelPruning does.

    Args:
        pruning_fn: "l1_unstructured", "random_unstructured", "ln_structured", "random_structured", a
            ``torch.nn.utils.prune.BasePruningMethod`` subclass (with ``use_global_unstructured``).
        parameters_to_prune: ``(module, "weight")`` pairs; empty: every ``parameter_names`` parameter of every
            layer that is not a container.
        parameter_names: which parameters of each layer ("weight", "bias"); default both.
        use_global_unstructured: one threshold over all the parameters (``prune.global_unstructured``) rather than
            one per tensor.
        amount: the fraction (float) or number (int) to prune, or ``amount(epoch)``; 0 skips that epoch.
        apply_pruning: whether to prune, or ``apply_pruning(epoch)``.
        make_pruning_permanent: at the end of training, and in every checkpoint's ``state_dict``, store the pruned
            weights under their own names (so the checkpoint loads into an unpruned model).
        use_lottery_ticket_hypothesis: after each pruning, reset the remaining weights to their values at setup
            (or ``fn(epoch)`` deciding when).
        resample_parameters: reset them to a fresh initialisation instead (``reset_parameters``).
        pruning_dim: the dimension for the structured methods; pruning_norm: the norm for "ln_structured".
        verbose: 1 logs the sparsity after each pruning, 2 also per parameter.
        prune_on_train_epoch_end: prune at the end of each training epoch; False: after each validation.

    Exact resume (a fulmen addition): with ``make_pruning_permanent`` the callback's checkpoint state holds the masks
    (and the weights the lottery ticket resets to), and they are put back when a fit resumes.
    """

    PARAMETER_NAMES = ("weight", "bias")

    def __init__(self, pruning_fn: Union[Callable[..., Any], str], parameters_to_prune: ParameterList = (),
                 parameter_names: Optional[list[str]] = None, use_global_unstructured: bool = True,
                 amount: Union[int, float, Callable[[int], Union[int, float]]] = 0.5,
                 apply_pruning: Union[bool, Callable[[int], bool]] = True, make_pruning_permanent: bool = True,
                 use_lottery_ticket_hypothesis: Union[bool, Callable[[int], bool]] = True,
                 resample_parameters: bool = False, pruning_dim: Optional[int] = None,
                 pruning_norm: Optional[int] = None, verbose: int = 0, prune_on_train_epoch_end: bool = True) -> None:
        self._parameter_names = tuple(parameter_names or self.PARAMETER_NAMES)
        for name in self._parameter_names:
            if name not in self.PARAMETER_NAMES:
                raise MisconfigurationException(f"ModelPruning(parameter_names=[..., {name!r}, ...]): each name must "
                                                f"be one of {self.PARAMETER_NAMES}")
        self._use_global_unstructured = use_global_unstructured
        self._global_kwargs: dict[str, Any] = {}
        self._pruning_method_name: Optional[str] = None
        if isinstance(pruning_fn, str):
            pruning_fn = self._create_pruning_fn(pruning_fn, pruning_dim, pruning_norm)
        elif inspect.isclass(pruning_fn) and issubclass(pruning_fn, torch_prune.BasePruningMethod):
            if not use_global_unstructured:
                raise MisconfigurationException(
                    f"ModelPruning(pruning_fn={pruning_fn.__name__}) is a BasePruningMethod, which needs "
                    "use_global_unstructured=True; for per-tensor pruning pass one of the method names")
            self._pruning_method_name = pruning_fn.__name__
        else:
            raise MisconfigurationException(
                f"ModelPruning(pruning_fn={pruning_fn!r}): pass one of {sorted(_METHODS)}, or a BasePruningMethod "
                "subclass (the class, not an instance)")
        if use_global_unstructured and getattr(pruning_fn, "PRUNING_TYPE", None) != "unstructured":
            raise MisconfigurationException(
                f"ModelPruning: use_global_unstructured=True needs an unstructured method, and {pruning_fn} is "
                f"{getattr(pruning_fn, 'PRUNING_TYPE', 'not a pruning method')}; pass use_global_unstructured=False")
        if isinstance(amount, bool) or not (isinstance(amount, (int, float)) or callable(amount)):
            raise MisconfigurationException(f"ModelPruning(amount={amount!r}): pass a fraction (float), a count "
                                            "(int), or a function of the epoch returning one")
        if verbose not in (0, 1, 2):
            raise MisconfigurationException(f"ModelPruning(verbose={verbose!r}): pass 0, 1 or 2")
        self.pruning_fn = pruning_fn
        self.amount = amount
        self._parameters_to_prune = parameters_to_prune
        self._apply_pruning = apply_pruning
        self._make_pruning_permanent = make_pruning_permanent
        self._use_lottery_ticket_hypothesis = use_lottery_ticket_hypothesis
        self._resample_parameters = resample_parameters
        self._prune_on_train_epoch_end = prune_on_train_epoch_end
        self._verbose = verbose
        # id(module) -> (a copy made at setup, [(index in _parameters_to_prune, parameter name)])
        self._original_layers: Optional[dict[int, tuple[nn.Module, list[tuple[int, str]]]]] = None
        self._names: list[str] = []  # "layer.weight" for each entry of _parameters_to_prune
        self._restored: Optional[dict[str, Any]] = None  # checkpoint state, applied when the fit starts

    def _create_pruning_fn(self, name: str, dim: Optional[int], norm: Optional[int]) -> Callable[..., Any]:
        name = name.lower()
        if name not in _METHODS:
            raise MisconfigurationException(f"ModelPruning(pruning_fn={name!r}) is not one of {sorted(_METHODS)}")
        kwargs: dict[str, Any] = {}
        if name.endswith("_structured"):
            if dim is None:
                raise MisconfigurationException(f"ModelPruning(pruning_fn={name!r}) needs pruning_dim, the dimension "
                                                "along which whole slices are pruned")
            if name == "ln_structured":
                if norm is None:
                    raise MisconfigurationException("ModelPruning(pruning_fn='ln_structured') needs pruning_norm, "
                                                    "the norm that ranks the slices (1, 2, ...)")
                kwargs["n"] = norm
            kwargs["dim"] = dim
        function, method = _METHODS[name]
        if self._use_global_unstructured:
            self._global_kwargs = kwargs
            self._pruning_method_name = method.__name__
            return method
        self._pruning_method_name = function.__name__

        def prune_one(module: nn.Module, name: str, amount: Union[int, float]) -> Any:
            return function(module, name=name, amount=amount, **kwargs)

        return prune_one

    # ------------------------------------------------------------------------------------------ public helpers
    def filter_parameters_to_prune(self, parameters_to_prune: ParameterList = ()) -> ParameterList:
        """Override to choose among the parameters found in setup."""
        return parameters_to_prune

    @staticmethod
    def sanitize_parameters_to_prune(pl_module: nn.Module, parameters_to_prune: ParameterList = (),
                                     parameter_names: Sequence[str] = ()) -> ParameterList:
        """Check ``parameters_to_prune`` against the model, or (when empty) list every ``parameter_names``
        parameter of its layers."""
        names = parameter_names or ModelPruning.PARAMETER_NAMES
        layers = [m for m in pl_module.modules() if not _is_container(m)]
        if not parameters_to_prune:
            return [(m, p) for p in names for m in layers if isinstance(getattr(m, p, None), nn.Parameter)]
        if not isinstance(parameters_to_prune, (list, tuple)) or not all(
                isinstance(pair, (list, tuple)) and len(pair) == 2 and isinstance(pair[0], nn.Module)
                and isinstance(pair[1], str) for pair in parameters_to_prune):
            raise MisconfigurationException("ModelPruning(parameters_to_prune=...) must be a list of (nn.Module, "
                                            "parameter name) pairs, such as [(model.fc, 'weight')], or empty")
        missing_modules = [m for m, _ in parameters_to_prune if not any(m is layer for layer in layers)]
        missing = [n for m, n in parameters_to_prune if any(m is layer for layer in layers) and not hasattr(m, n)]
        if missing_modules or missing:
            raise MisconfigurationException(
                f"ModelPruning(parameters_to_prune=...) names what the model does not have: modules "
                f"{missing_modules}, parameters {missing}; pass layers of the LightningModule being fitted")
        return parameters_to_prune

    @staticmethod
    def make_pruning_permanent(module: nn.Module) -> None:
        """Remove the pruning hooks, leaving each pruned parameter as the masked tensor."""
        for layer in module.modules():
            for key, hook in list(layer._forward_pre_hooks.items()):
                if isinstance(hook, torch_prune.BasePruningMethod):
                    hook.remove(layer)
                    del layer._forward_pre_hooks[key]

    def apply_lottery_ticket_hypothesis(self) -> None:
        """Reset the pruned parameters (what the masks leave) to their values at setup, or with
        ``resample_parameters`` to a fresh initialisation."""
        assert self._original_layers is not None
        for original, names in self._original_layers.values():
            if self._resample_parameters and callable(getattr(original, "reset_parameters", None)):
                original = copy.deepcopy(original)  # the setup values stay for the next reset
                original.reset_parameters()
            for index, name in names:
                layer = self._parameters_to_prune[index][0]
                target = getattr(layer, name + "_orig", None)
                target = getattr(layer, name) if target is None else target
                source = getattr(original, name)
                if isinstance(target, Tensor) and isinstance(source, Tensor):
                    # A copy: sharing the storage (as Lightning does) would let training change the saved values,
                    # so the next reset would go back to the trained weights rather than to those at setup.
                    target.data = source.data.to(target.device, copy=True)

    def apply_pruning(self, amount: Union[int, float]) -> None:
        """Prune ``amount`` of the parameters (globally or per tensor)."""
        before = [self._pruned_stats(m, n) for m, n in self._parameters_to_prune] if self._verbose else []
        if self._use_global_unstructured:
            accepted = set(inspect.signature(self.pruning_fn).parameters) - {"self"}
            kwargs = {k: v for k, v in {**self._global_kwargs, "amount": amount}.items() if k in accepted}
            torch_prune.global_unstructured(self._parameters_to_prune, pruning_method=self.pruning_fn, **kwargs)
        else:
            for module, name in self._parameters_to_prune:
                self.pruning_fn(module, name=name, amount=amount)
        if self._verbose:
            self._log_sparsity(before, [self._pruned_stats(m, n) for m, n in self._parameters_to_prune], amount)

    # ------------------------------------------------------------------------------------------ hooks
    @override
    def setup(self, trainer: "Trainer", pl_module: Any, stage: str) -> None:
        found = self.sanitize_parameters_to_prune(pl_module, self._parameters_to_prune, self._parameter_names)
        self._parameters_to_prune = self.filter_parameters_to_prune(found)
        paths = {id(m): path for path, m in pl_module.named_modules()}
        self._names = [f"{paths[id(m)]}.{n}" if paths[id(m)] else n for m, n in self._parameters_to_prune]
        if self._use_lottery_ticket_hypothesis:
            self._original_layers = {}
            for index, (module, name) in enumerate(self._parameters_to_prune):
                entry = self._original_layers.setdefault(id(module), (copy.deepcopy(module), []))
                entry[1].append((index, name))

    @override
    def on_fit_start(self, trainer: "Trainer", pl_module: Any) -> None:
        # After configure_optimizers and before the optimizer state is loaded: the optimizer was built over the
        # unpruned parameters, as in the run that wrote the checkpoint.
        if self._restored is not None:
            self._reapply(self._restored)
            self._restored = None

    @override
    def on_train_epoch_end(self, trainer: "Trainer", pl_module: Any) -> None:
        if self._prune_on_train_epoch_end:
            self._run_pruning(pl_module.current_epoch)

    @override
    def on_validation_epoch_end(self, trainer: "Trainer", pl_module: Any) -> None:
        if not trainer.sanity_checking and not self._prune_on_train_epoch_end:
            self._run_pruning(pl_module.current_epoch)

    @override
    def on_train_end(self, trainer: "Trainer", pl_module: Any) -> None:
        if self._make_pruning_permanent:
            self.make_pruning_permanent(pl_module)

    @override
    def on_save_checkpoint(self, trainer: "Trainer", pl_module: Any, checkpoint: dict[str, Any]) -> None:
        if self._make_pruning_permanent:
            checkpoint["state_dict"] = self._permanent_state_dict(pl_module)

    @override
    def state_dict(self) -> dict[str, Any]:
        if not self._make_pruning_permanent or not self._names:
            return {}
        masks = {}
        for name, (module, param) in zip(self._names, self._parameters_to_prune):
            mask = getattr(module, param + "_mask", None)
            if mask is not None:
                masks[name] = mask.detach().cpu()
        state: dict[str, Any] = {"masks": masks}
        if self._original_layers is not None:
            state["original"] = {self._names[i]: getattr(original, n).detach().cpu()
                                 for original, names in self._original_layers.values() for i, n in names}
        return state

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = dict(state_dict) if state_dict else None

    # ------------------------------------------------------------------------------------------ internals
    def _run_pruning(self, epoch: int) -> None:
        prune = self._apply_pruning(epoch) if callable(self._apply_pruning) else self._apply_pruning
        amount = self.amount(epoch) if callable(self.amount) else self.amount
        if not prune or not amount:
            return
        self.apply_pruning(amount)
        lottery = self._use_lottery_ticket_hypothesis
        if lottery(epoch) if callable(lottery) else lottery:
            self.apply_lottery_ticket_hypothesis()

    def _reapply(self, state: dict[str, Any]) -> None:
        by_name = dict(zip(self._names, self._parameters_to_prune))
        for name, mask in state.get("masks", {}).items():
            module, param = by_name[name]
            torch_prune.custom_from_mask(module, param, mask.to(getattr(module, param).device))
        if self._original_layers is not None:
            for original, names in self._original_layers.values():
                for index, param in names:
                    saved = state.get("original", {}).get(self._names[index])
                    if saved is not None:
                        getattr(original, param).data = saved.to(getattr(original, param).device)

    @staticmethod
    def _permanent_state_dict(pl_module: nn.Module) -> dict[str, Any]:
        state = pl_module.state_dict()
        for key in [k[:-len("_mask")] for k in state if k.endswith("_mask")]:
            orig, mask = state.pop(key + "_orig"), state.pop(key + "_mask")
            state[key] = mask.to(dtype=orig.dtype) * orig
        return {k: v.cpu() if isinstance(v, Tensor) else v for k, v in state.items()}

    @staticmethod
    def _pruned_stats(module: nn.Module, name: str) -> tuple[int, int]:
        mask = getattr(module, name + "_mask", None)
        if mask is None:  # not pruned yet
            return 0, getattr(module, name).numel()
        return int((mask == 0).sum()), mask.numel()

    @rank_zero_only
    def _log_sparsity(self, before: list[tuple[int, int]], after: list[tuple[int, int]],
                      amount: Union[int, float]) -> None:
        total = sum(n for _, n in after)
        zeros_before, zeros_after = sum(z for z, _ in before), sum(z for z, _ in after)
        log.info(f"ModelPruning ({self._pruning_method_name}, amount={amount}): {zeros_before}/{total} "
                 f"({zeros_before / total:.2%}) -> {zeros_after}/{total} ({zeros_after / total:.2%}) pruned")
        if self._verbose == 2:
            for label, (z0, n0), (z1, n1) in zip(self._names, before, after):
                log.info(f"ModelPruning ({self._pruning_method_name}) {label}: {z0}/{n0} ({z0 / n0:.2%}) -> "
                         f"{z1}/{n1} ({z1 / n1:.2%}) pruned")

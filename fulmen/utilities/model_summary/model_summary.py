"""ModelSummary: the table of a module's layers that fit prints at its start (Lightning's layout and numbers).

Columns: index, name, type, parameters, train/eval mode, FLOPs, and with ``example_input_array`` set the input and
output sizes of each layer, found by running that input through the model once (no gradients, eval mode, modes put
back after). FLOPs are counted by ``torch.utils.flop_counter`` during that same pass (0 without an example input).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

UNKNOWN_SIZE = "?"
PARAMETER_NUM_UNITS = [" ", "K", "M", "B", "T"]  # the unit letters of the counts: thousands, millions, ...
LEFTOVER_PARAMS_NAME = "other params"  # the row of parameters that belong to no listed layer
NOT_APPLICABLE = "n/a"


def get_human_readable_count(number: float) -> str:
    """Lightning's count format: "123  " (small counts padded to the width of a unit), "1.2 K", "132 K", "2.0 M",
    then B and T (never beyond: "5,000 T")."""
    number = int(number)
    if number < 1000:
        return f"{number:,d}  "
    group = min((len(str(number)) - 1) // 3, 4)
    scaled = number / 10 ** (3 * group)
    label = PARAMETER_NUM_UNITS[group]
    return f"{int(scaled):,d} {label}" if scaled >= 100 else f"{scaled:,.1f} {label}"


def parse_batch_shape(batch: Any) -> Any:
    """The shape of a tensor as a list, nested lists of shapes for a list or tuple, "?" for anything else."""
    if hasattr(batch, "shape"):
        return list(batch.shape)
    if isinstance(batch, (list, tuple)):
        return [parse_batch_shape(v) for v in batch]
    return UNKNOWN_SIZE


def get_formatted_model_size(total_model_size: float) -> str:
    """A size in MB as the summary prints it (three decimals, thousands separated)."""
    return f"{total_model_size:,.3f}"


class LayerSummary:
    """One submodule's line of the summary: ``layer_type``, ``num_parameters``, ``training`` and, once the example
    input ran through the model, ``in_size`` and ``out_size``. Recording the sizes needs a forward hook on the
    submodule: ``detach_hook()`` removes it."""

    def __init__(self, module: nn.Module) -> None:
        self._module = module
        self._in_size: Any = None
        self._out_size: Any = None
        self._hook = module.register_forward_hook(self._record)

    def _record(self, module: nn.Module, inputs: Any, output: Any) -> None:
        self._in_size = parse_batch_shape(inputs[0] if len(inputs) == 1 else inputs)
        self._out_size = parse_batch_shape(output)

    def detach_hook(self) -> None:
        """Stop recording sizes."""
        self._hook.remove()

    def __del__(self) -> None:
        self.detach_hook()

    @property
    def in_size(self) -> Any:
        return self._in_size if self._in_size is not None else UNKNOWN_SIZE

    @property
    def out_size(self) -> Any:
        return self._out_size if self._out_size is not None else UNKNOWN_SIZE

    @property
    def layer_type(self) -> str:
        return type(self._module).__name__

    @property
    def num_parameters(self) -> int:
        return sum(_numel(p) for p in self._module.parameters())

    @property
    def training(self) -> bool:
        return self._module.training


def _numel(param: torch.Tensor) -> int:
    """A parameter's number of elements; DeepSpeed's ZeRO-3 keeps the full count in ``ds_numel`` (the tensor itself
    holds only this process's shard)."""
    return int(getattr(param, "ds_numel", param.numel()))


class ModelSummary:
    """A summary of ``model`` down to ``max_depth`` levels of submodules (-1: all, 0: none).

    ``str(summary)`` is the table; the numbers are attributes: ``layer_names``, ``layer_types``, ``param_nums``,
    ``training_modes``, ``in_sizes``, ``out_sizes``, ``total_parameters``, ``trainable_parameters``, ``model_size``
    (MB), ``total_flops``, ``total_training_modes``.
    """

    def __init__(self, model: nn.Module, max_depth: int = 1) -> None:
        if not isinstance(max_depth, int) or max_depth < -1:
            raise ValueError(f"ModelSummary(max_depth={max_depth!r}) must be an int >= -1 (-1 shows every level)")
        self._model = model
        self._max_depth = max_depth
        self._layers = [(name, module) for name, module in model.named_modules()
                        if name and (max_depth == -1 or name.count(".") + 1 <= max_depth)] if max_depth else []
        self.in_sizes: list[Any] = [UNKNOWN_SIZE] * len(self._layers)
        self.out_sizes: list[Any] = [UNKNOWN_SIZE] * len(self._layers)
        self._flops: dict[str, int] = {}
        self.total_flops = 0
        if getattr(model, "example_input_array", None) is not None:
            self._run_example()

    def _run_example(self) -> None:
        from torch.utils.flop_counter import FlopCounterMode

        model = self._model
        example = model.example_input_array
        device = getattr(model, "device", None)
        if device is not None:
            from fulmen.utilities.apply_to_collection import move_data_to_device

            example = move_data_to_device(example, device)
        layers = [LayerSummary(module) for _, module in self._layers]  # each records its sizes in the forward
        modes = {m: m.training for m in model.modules()}
        depth = self._max_depth + 1 if self._max_depth != -1 else 999
        counter = FlopCounterMode(display=False, depth=depth)
        model.eval()
        try:
            with torch.no_grad(), counter:
                if isinstance(example, (list, tuple)):
                    model(*example)
                elif isinstance(example, dict):
                    model(**example)
                else:
                    model(example)
        finally:
            for layer in layers:
                layer.detach_hook()
            for module, training in modes.items():
                module.training = training
        self.in_sizes = [layer.in_size for layer in layers]
        self.out_sizes = [layer.out_size for layer in layers]
        prefix = type(model).__name__
        counts = counter.get_flop_counts()
        self._flops = {name: int(sum(counts.get(f"{prefix}.{name}", {}).values())) for name, _ in self._layers}
        self.total_flops = int(counter.get_total_flops())

    # ------------------------------------------------------------------------------------------ the numbers
    @property
    def layer_names(self) -> list[str]:
        return [name for name, _ in self._layers]

    @property
    def layer_types(self) -> list[str]:
        return [type(module).__name__ for _, module in self._layers]

    @property
    def param_nums(self) -> list[int]:
        return [sum(_numel(p) for p in module.parameters()) for _, module in self._layers]

    @property
    def training_modes(self) -> list[bool]:
        return [module.training for _, module in self._layers]

    @property
    def total_training_modes(self) -> dict[str, int]:
        """How many submodules (every level, the model itself not counted) are in train and in eval mode."""
        modes = [m.training for m in self._model.modules()][1:]
        return {"train": sum(modes), "eval": len(modes) - sum(modes)}

    @property
    def total_parameters(self) -> int:
        return sum(_numel(p) for p in self._model.parameters())

    @property
    def trainable_parameters(self) -> int:
        return sum(_numel(p) for p in self._model.parameters() if p.requires_grad)

    @property
    def total_layer_params(self) -> int:
        return sum(self.param_nums)

    @property
    def model_size(self) -> float:
        """The parameters' size in MB."""
        return sum(_numel(p) * p.element_size() for p in self._model.parameters()) / 1e6

    @property
    def flop_counts(self) -> dict[str, int]:
        return dict(self._flops)

    # ------------------------------------------------------------------------------------------ the table
    def columns(self) -> list[tuple[str, list[str]]]:
        """The table as (header, cells) columns: index, name, type, parameters, mode, FLOPs (and the in/out sizes
        with an example input), plus an "other params" row for parameters that belong to no listed layer."""
        count = len(self._layers)
        columns = [
            (" ", [str(i) for i in range(count)]),
            ("Name", self.layer_names),
            ("Type", self.layer_types),
            ("Params", [get_human_readable_count(n) for n in self.param_nums]),
            ("Mode", ["train" if mode else "eval" for mode in self.training_modes]),
            ("FLOPs", [get_human_readable_count(self._flops.get(name, 0)) for name in self.layer_names]),
        ]
        if getattr(self._model, "example_input_array", None) is not None:
            columns += [("In sizes", [str(s) for s in self.in_sizes]), ("Out sizes", [str(s) for s in self.out_sizes])]
        leftover = self.total_parameters - self.total_layer_params
        if leftover > 0:  # parameters that belong to no listed layer (the model's own, or all at max_depth=0)
            columns[0][1].append(" ")
            columns[1][1].append(LEFTOVER_PARAMS_NAME)
            columns[2][1].append(NOT_APPLICABLE)
            columns[3][1].append(get_human_readable_count(leftover))
            for _, values in columns[4:]:
                values.append(NOT_APPLICABLE)
        return columns

    def totals(self) -> list[tuple[str, str]]:
        """The lines under the table, as (value, label)."""
        modes = self.total_training_modes
        return [(get_human_readable_count(self.trainable_parameters), "Trainable params"),
                (get_human_readable_count(self.total_parameters - self.trainable_parameters), "Non-trainable params"),
                (get_human_readable_count(self.total_parameters), "Total params"),
                (get_formatted_model_size(self.model_size), "Total estimated model params size (MB)"),
                (str(modes["train"]), "Modules in train mode"),
                (str(modes["eval"]), "Modules in eval mode"),
                (get_human_readable_count(self.total_flops), "Total Flops")]

    def __str__(self) -> str:
        columns = self.columns()
        widths = [max([len(header)] + [len(v) for v in values]) for header, values in columns]
        total_width = sum(widths) + 3 * (len(columns) + 1)
        lines = [" | ".join(h.ljust(w) for (h, _), w in zip(columns, widths)), "-" * total_width]
        rows = len(columns[0][1])
        lines += [" | ".join(values[i].ljust(w) for (_, values), w in zip(columns, widths)) for i in range(rows)]
        lines.append("-" * total_width)
        lines += [f"{value:<10}{label}" for value, label in self.totals()]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)


def summarize(model: nn.Module, max_depth: int = 1) -> ModelSummary:
    """``ModelSummary(model, max_depth)``."""
    return ModelSummary(model, max_depth)


"""The model summary under DeepSpeed's ZeRO-3, where each process holds a shard of every parameter: counts come
from the full sizes DeepSpeed records on each parameter (``ds_numel``)."""

from __future__ import annotations

import torch

from fulmen.utilities.model_summary.model_summary import LayerSummary, ModelSummary, _numel


def deepspeed_param_size(p: torch.nn.Parameter) -> int:
    """The full number of elements of a (possibly ZeRO-3 partitioned) parameter."""
    return _numel(p)


class DeepSpeedLayerSummary(LayerSummary):
    """A layer's line of the summary, counting partitioned parameters at their full size."""

    @property
    def partitioned_parameters(self) -> int:
        """The elements of this layer's parameters that this process holds."""
        return sum(p.numel() for p in self._module.parameters())


class DeepSpeedSummary(ModelSummary):
    """The summary of a module whose parameters DeepSpeed partitions; every count is the full size (the summary
    counts ``ds_numel`` wherever DeepSpeed set it, so this is ``ModelSummary`` under DeepSpeed's name)."""

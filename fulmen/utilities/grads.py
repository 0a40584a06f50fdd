"""The norms of a module's gradients, to log from ``on_before_optimizer_step``."""

from __future__ import annotations

from typing import Union

import torch
from torch import nn


def grad_norm(module: nn.Module, norm_type: Union[float, int, str], group_separator: str = "/") -> dict[str, torch.Tensor]:
    """The p-norm of each parameter's gradient, under ``grad_{p}_norm/<name>``, and of all of them as one vector,
    under ``grad_{p}_norm_total``. ``norm_type`` is a positive number or ``"inf"``.

    The norms stay tensors on the gradients' device (no host-device sync): ``self.log_dict(grad_norm(self, 2))``.
    """
    p = float(norm_type)
    if p <= 0:
        raise ValueError(f"grad_norm(norm_type={norm_type!r}) must be a positive number or 'inf'")
    norms = {f"grad_{p}_norm{group_separator}{name}": param.grad.detach().norm(p)
             for name, param in module.named_parameters() if param.grad is not None}
    if norms:
        norms[f"grad_{p}_norm_total"] = torch.stack(list(norms.values())).norm(p)
    return norms

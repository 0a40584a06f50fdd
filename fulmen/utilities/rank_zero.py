"""Print, warn and run only on the process of global rank zero."""

from __future__ import annotations

import functools
import logging
import os
import warnings
from typing import Any, Callable, TypeVar

log = logging.getLogger("fulmen")
_T = TypeVar("_T")


def _env_rank() -> int:
    # torchrun and SLURM set these before any process group exists, so rank zero is known from the start.
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        if key in os.environ:
            return int(os.environ[key])
    return 0


def rank_zero_only(fn: Callable[..., _T]) -> Callable[..., _T | None]:
    """Decorate ``fn`` so that it runs on global rank zero only and returns None elsewhere."""

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> _T | None:
        if rank_zero_only.rank == 0:  # type: ignore[attr-defined]
            return fn(*args, **kwargs)
        return None

    return wrapped


rank_zero_only.rank = _env_rank()  # type: ignore[attr-defined]


@rank_zero_only
def rank_zero_warn(message: str, category: type[Warning] = UserWarning, stacklevel: int = 4) -> None:
    """Emit a warning on rank zero only."""
    warnings.warn(message, category, stacklevel=stacklevel)


@rank_zero_only
def rank_zero_info(message: str) -> None:
    """Log ``message`` at INFO level on rank zero only."""
    log.info(message)


@rank_zero_only
def rank_zero_deprecation(message: str) -> None:
    """Emit a DeprecationWarning on rank zero only."""
    warnings.warn(message, DeprecationWarning, stacklevel=4)

"""Print, warn and run only on the process of global rank zero."""

from __future__ import annotations

import functools
import logging
import os
import warnings
from typing import Any, Callable, Optional, TypeVar

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


@rank_zero_only
def rank_zero_debug(*args: Any, stacklevel: int = 4, **kwargs: Any) -> None:
    """Log at DEBUG level on rank zero only."""
    log.debug(*args, stacklevel=stacklevel, **kwargs)


def rank_prefixed_message(message: str, rank: Optional[int]) -> str:
    """``message`` prefixed with ``[rank: N]`` when a rank is given."""
    return f"[rank: {rank}] {message}" if rank is not None else message


class LightningDeprecationWarning(DeprecationWarning):
    """Warns about a name or argument that a later release removes (shown by default, unlike DeprecationWarning)."""


warnings.simplefilter("default", category=LightningDeprecationWarning)


class WarningCache(set):
    """Remembers the messages it has warned or logged, so that each is shown once (on rank zero)."""

    def warn(self, message: str, stacklevel: int = 5, **kwargs: Any) -> None:
        """``rank_zero_warn(message)`` the first time only."""
        if message not in self:
            self.add(message)
            rank_zero_warn(message, stacklevel=stacklevel, **kwargs)

    def deprecation(self, message: str, stacklevel: int = 6, **kwargs: Any) -> None:
        """A ``LightningDeprecationWarning`` with ``message``, the first time only."""
        if message not in self:
            self.add(message)
            rank_zero_warn(message, category=LightningDeprecationWarning, stacklevel=stacklevel)

    def info(self, message: str, stacklevel: int = 5, **kwargs: Any) -> None:
        """``rank_zero_info(message)`` the first time only."""
        if message not in self:
            self.add(message)
            rank_zero_info(message)

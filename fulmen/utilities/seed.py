"""Seeding of python, numpy and torch, and of DataLoader workers."""

from __future__ import annotations

import contextlib
import os
import random
import sys
from collections.abc import Iterator
from typing import Any, Optional

import torch

from fulmen.utilities.rank_zero import rank_zero_info, rank_zero_warn

_MAX_SEED = 2**32 - 1
# Whether this process trains on an XLA device (set by the XLA strategy): its random numbers then also come from
# torch_xla's generator, which seed_everything, capture_rng and restore_rng handle too. Asking torch_xla otherwise
# would start its runtime in processes that never use it.
_xla_in_use = False


def use_xla_generator() -> None:
    """From now on the random states include torch_xla's generator. The first time, it is seeded with the seed that
    ``seed_everything`` was given (``PL_GLOBAL_SEED``), usually before the Trainer chose the XLA device."""
    global _xla_in_use
    if _xla_in_use:
        return
    _xla_in_use = True
    seed = os.environ.get("PL_GLOBAL_SEED")
    if seed is not None:
        import torch_xla.core.xla_model as xm

        xm.set_rng_state(int(seed))


def seed_everything(seed: Optional[int] = None, workers: bool = False, verbose: bool = True) -> int:
    """Seed the random generators of python, numpy (when installed) and torch (all devices); return the seed.

    ``seed=None`` reads the ``PL_GLOBAL_SEED`` environment variable and falls back to 0. ``workers=True`` makes the
    Trainer give every DataLoader without a ``worker_init_fn`` one that seeds each worker differently per rank.
    """
    if seed is None:
        env = os.environ.get("PL_GLOBAL_SEED")
        if env is None:
            seed = 0
            rank_zero_warn("seed_everything(seed=None) with no PL_GLOBAL_SEED set: using seed 0")
        else:
            try:
                seed = int(env)
            except ValueError:
                raise ValueError(f"PL_GLOBAL_SEED={env!r} is not an integer; set it to a number or pass seed=") from None
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed_everything(seed={seed!r}): seed must be an int")
    if not 0 <= seed <= _MAX_SEED:
        rank_zero_warn(f"seed {seed} is outside [0, {_MAX_SEED}]; using 0 instead")
        seed = 0
    if verbose:
        rank_zero_info(f"Seed set to {seed}")
    os.environ["PL_GLOBAL_SEED"] = str(seed)
    random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if _xla_in_use:  # XLA devices draw from torch_xla's own generator, which manual_seed leaves
        import torch_xla.core.xla_model as xm

        xm.set_rng_state(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass
    os.environ["PL_SEED_WORKERS"] = f"{int(workers)}"
    return seed


def worker_init_function(worker_id: int, rank: Optional[int] = None) -> None:
    """Seed python, numpy and torch in a DataLoader worker from the base seed, the worker id and the global rank.

    torch already gives each worker a distinct torch seed; numpy and python would otherwise repeat the parent's
    state in every worker, so augmentations would repeat across workers.
    """
    global_rank = rank if rank is not None else int(os.environ.get("RANK", 0))
    base = torch.initial_seed() - worker_id
    seq = [base, worker_id, global_rank]
    # Mix the three numbers so that nearby (seed, worker, rank) triples give unrelated streams.
    mixed = 0
    for value in seq:
        mixed = (mixed * 6364136223846793005 + value + 1442695040888963407) % 2**64
    torch.manual_seed((mixed ^ (mixed >> 29)) % 2**63)
    random.seed(mixed % 2**32)
    try:
        import numpy as np

        np.random.seed((mixed >> 32) % 2**32)
    except ImportError:
        pass


# The name Lightning uses, so code that passes it as worker_init_fn keeps working.
pl_worker_init_function = worker_init_function


# ---------------------------------------------------------------------------------------------- random states
def capture_rng() -> dict[str, Any]:
    """The global random states, as the libraries return them (cheap: taken at every epoch start)."""
    out: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    numpy = sys.modules.get("numpy")
    if numpy is not None:  # not imported means nothing has drawn from it
        out["numpy"] = numpy.random.get_state(legacy=False)
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    if _xla_in_use:
        import torch_xla.core.xla_model as xm

        out["xla"] = xm.get_rng_state()  # an int: the seed of the next draw on the XLA device
    return out


def restore_rng(saved: dict[str, Any]) -> None:
    """Set the global random states back to ``capture_rng``'s output (or its ``plain_rng`` form)."""
    py = saved["python"]
    if isinstance(py, dict):
        py = (py["version"], tuple(int(w) for w in py["state"].tolist()), py["gauss"])
    random.setstate(py)
    torch.set_rng_state(saved["torch"])
    if "numpy" in saved:
        import numpy

        np_state = saved["numpy"]
        if "key" in np_state:
            np_state = {"bit_generator": np_state["bit_generator"],
                        "state": {"key": np_state["key"].numpy().astype("uint32"), "pos": np_state["pos"]},
                        "has_gauss": np_state["has_gauss"], "gauss": np_state["gauss"]}
        numpy.random.set_state(np_state)
    if "cuda" in saved and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["cuda"])
    if "xla" in saved and _xla_in_use:
        import torch_xla.core.xla_model as xm

        xm.set_rng_state(int(saved["xla"]))


@contextlib.contextmanager
def isolate_rng() -> Iterator[None]:
    """Run a block without changing the global random states (python, numpy, torch, CUDA, XLA): they are put back
    after it. The Trainer runs the sanity check this way, as Lightning does."""
    states = capture_rng()
    try:
        yield
    finally:
        restore_rng(states)

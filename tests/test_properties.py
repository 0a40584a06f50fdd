"""Property-based tests (hypothesis): the Trainer's argument checks accept exactly the values Lightning accepts and
refuse the rest with a ValueError/TypeError naming the argument; batch transfer keeps any nested collection's shape
and types and moves every tensor."""

from __future__ import annotations

import dataclasses
from collections import OrderedDict, namedtuple

import pytest
import torch

import fulmen
from fulmen.utilities.apply_to_collection import apply_to_collection, move_data_to_device

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SETTINGS = settings(max_examples=150, deadline=None)
anything = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                     st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
                     st.lists(st.integers(-3, 3), max_size=3))


def trainer_error(**kwargs):
    """The exception Trainer(**kwargs) raises, or None."""
    try:
        fulmen.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False,
                       enable_checkpointing=False, **kwargs)
    except (ValueError, TypeError) as err:
        return err
    return None


def named(err, name):
    return err is not None and f"{name}=" in str(err)


def _is_int(value, least):
    return type(value) is int and value >= least


# What Lightning accepts for each argument; everything else must be refused, naming the argument.
ACCEPTS = {
    "limit_train_batches": lambda v: v is None or _is_int(v, 0) or (type(v) is float and 0.0 <= v <= 1.0),
    "max_epochs": lambda v: v is None or _is_int(v, -1),
    "max_steps": lambda v: _is_int(v, -1),
    "accumulate_grad_batches": lambda v: _is_int(v, 1),
    # inf is allowed (the norm is computed, nothing clipped), as in Lightning; NaN and negatives are not
    "gradient_clip_val": lambda v: v is None or (type(v) in (int, float) and v >= 0),
    **{name: lambda v: type(v) is bool
       for name in ("inference_mode", "detect_anomaly", "skip_nonfinite", "sync_batchnorm")},
}


@pytest.mark.parametrize("name", sorted(ACCEPTS))
@SETTINGS
@given(value=anything)
def test_argument_checks(name, value):
    ok = ACCEPTS[name](value)
    err = trainer_error(**{name: value})
    assert (err is None) == ok, (name, value, err)
    assert ok or named(err, name), (name, value, err)


# ---------------------------------------------------------------------------------------------- batch transfer
Pair = namedtuple("Pair", "a b")


@dataclasses.dataclass
class Box:
    x: object
    label: str = "box"


leaves = st.one_of(st.integers(), st.text(max_size=4), st.none(),
                   st.builds(lambda n: torch.arange(n, dtype=torch.float32), st.integers(0, 4)))


def containers(children):
    return st.one_of(st.lists(children, max_size=3), st.tuples(children, children),
                     st.dictionaries(st.text(max_size=3), children, max_size=3),
                     st.builds(Pair, children, children), st.builds(Box, children),
                     st.builds(lambda d: OrderedDict(d), st.dictionaries(st.text(max_size=3), children, max_size=2)))


batches = st.recursive(leaves, containers, max_leaves=12)


def same_shape(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b.cpu()) and a.dtype == b.dtype
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same_shape(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_shape(x, y) for x, y in zip(a, b))
    if dataclasses.is_dataclass(a):
        return all(same_shape(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    return a == b


def tensors(batch):
    found = []
    apply_to_collection(batch, torch.Tensor, found.append)
    return found


@SETTINGS
@given(batch=batches)
def test_transfer_keeps_the_structure_and_moves_every_tensor(batch):
    moved = move_data_to_device(batch, torch.device("meta"))
    assert all(t.device.type == "meta" for t in tensors(moved))
    assert len(tensors(moved)) == len(tensors(batch))
    back = move_data_to_device(batch, "cpu")
    assert same_shape(batch, back)


@SETTINGS
@given(batch=batches)
def test_the_transfer_hook_moves_what_the_default_moves(batch):
    module = fulmen.demos.boring_classes.BoringModel()
    out = module.transfer_batch_to_device(batch, torch.device("cpu"), 0)
    assert same_shape(batch, out)

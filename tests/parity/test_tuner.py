"""The Tuner on both frameworks: the learning-rate range test records the same learning rates and smoothed losses
and suggests the same rate; the batch size search tries the same sizes and settles on the same one."""

from __future__ import annotations

import importlib

import pytest
import torch

from tests.models import tunable_model
from tests.parity.recorder import load, quiet_trainer

pytest.importorskip("pytorch_lightning")


def _tuner(framework):
    return importlib.import_module("fulmen.tuner" if framework == "fulmen" else "pytorch_lightning.tuner").Tuner


@pytest.mark.parametrize("kwargs", [
    dict(num_training=60, min_lr=1e-4, max_lr=10.0),
    dict(num_training=40, min_lr=1e-3, max_lr=2.0, mode="linear", early_stop_threshold=None),
    dict(num_training=30, min_lr=1e-4, max_lr=1.0, accumulate=2),
])
def test_lr_find_matches(tmp_path, kwargs):
    kwargs = dict(kwargs)
    accumulate = kwargs.pop("accumulate", 1)
    got = {}
    for framework in ("fulmen", "pytorch_lightning"):
        pl, demos = load(framework)
        model = tunable_model(demos.BoringModel)()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        trainer = quiet_trainer(pl, default_root_dir=tmp_path, max_epochs=10, accumulate_grad_batches=accumulate)
        finder = _tuner(framework)(trainer).lr_find(model, **kwargs)
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
        assert trainer.global_step == 0
        got[framework] = (finder.results, finder.suggestion(), model.lr)
    ours, theirs = got["fulmen"], got["pytorch_lightning"]
    assert len(ours[0]["lr"]) == len(theirs[0]["lr"]) > 10
    assert ours[0]["lr"] == pytest.approx(theirs[0]["lr"], rel=1e-12)
    assert ours[0]["loss"] == pytest.approx(theirs[0]["loss"], rel=1e-5)
    assert ours[1] == pytest.approx(theirs[1], rel=1e-12) and ours[2] == ours[1]


@pytest.mark.parametrize("mode, init_val, limit", [("power", 2, 40), ("binsearch", 2, 40), ("binsearch", 3, 100),
                                                   ("power", 64, 20)])
def test_scale_batch_size_matches(tmp_path, mode, init_val, limit):
    got = {}
    for framework in ("fulmen", "pytorch_lightning"):
        pl, demos = load(framework)
        # (Lightning's first trial runs with the loader built before init_val is set: start from init_val.)
        model = tunable_model(demos.BoringModel, limit=limit)(batch_size=init_val)
        trainer = quiet_trainer(pl, default_root_dir=tmp_path, max_epochs=1)
        size = _tuner(framework)(trainer).scale_batch_size(model, mode=mode, init_val=init_val)
        got[framework] = (size, model.batch_size, trainer.global_step)
    assert got["fulmen"] == got["pytorch_lightning"]

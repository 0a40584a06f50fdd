"""ModelPruning: a resumed fit ends with the weights of one never stopped, checkpoints load into an unpruned
model, the sparsity is logged, and bad arguments are named."""

from __future__ import annotations

import logging

import pytest
import torch

from fulmen.callbacks import Callback, ModelPruning
from fulmen.demos.boring_classes import BoringModel
from fulmen.utilities.exceptions import MisconfigurationException
from tests.models import quiet_fit, swa_model

Net = swa_model(BoringModel, batch_norm=False, scheduler=False)


class SaveAt(Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if (trainer.current_epoch, batch_idx) == (2, 3):
            trainer.save_checkpoint("mid.ckpt")


def _fit(callbacks, ckpt_path=None):
    model = Net()
    quiet_fit(model, callbacks, ckpt_path, max_epochs=4, limit_val_batches=0)
    return model


@pytest.mark.parametrize("kwargs", [dict(pruning_fn="l1_unstructured", amount=0.3),
                                    dict(pruning_fn="ln_structured", use_global_unstructured=False, pruning_dim=0,
                                         pruning_norm=1, amount=0.25, parameter_names=["weight"],
                                         use_lottery_ticket_hypothesis=False)])
def test_resumed_fit_ends_with_the_uninterrupted_weights(kwargs):
    full = _fit([ModelPruning(**kwargs), SaveAt()])
    checkpoint = torch.load("mid.ckpt", weights_only=True)
    assert not any(k.endswith(("_orig", "_mask")) for k in checkpoint["state_dict"])  # permanent in the file
    assert checkpoint["callbacks"]["ModelPruning"]["masks"]
    resumed = _fit([ModelPruning(**kwargs)], ckpt_path="mid.ckpt")
    for name, value in full.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
    assert float((full.layer[0].weight == 0).float().mean()) >= 0.25


def test_the_lottery_ticket_resets_to_the_setup_weights_every_round():
    """Lightning's reset shares the storage of the saved copy, so training changes it and later rounds reset to
    trained weights; fulmen copies, so every round goes back to the weights at setup."""
    after_reset = []

    class Look(Callback):
        def on_train_epoch_end(self, trainer, pl_module):  # runs after ModelPruning's, which comes first
            after_reset.append(pl_module.layer[0].weight_orig.detach().clone())

    initial = Net().layer[0].weight.detach().clone()
    _fit([ModelPruning("l1_unstructured", amount=0.3), Look()])
    assert len(after_reset) == 4
    for weights in after_reset:
        assert torch.equal(weights, initial)


def test_checkpoint_loads_into_an_unpruned_model():
    model = _fit([ModelPruning("l1_unstructured", amount=0.5), SaveAt()])
    loaded = Net.load_from_checkpoint("mid.ckpt")
    assert set(loaded.state_dict()) == {"layer.0.weight", "layer.0.bias", "layer.2.weight", "layer.2.bias"}
    assert set(model.state_dict()) == set(loaded.state_dict())  # pruning made permanent at the end of fit
    assert float((loaded.layer[0].weight == 0).float().mean()) > 0.4


def test_verbose_logs_the_sparsity(caplog):
    with caplog.at_level(logging.INFO, logger="fulmen"):
        _fit([ModelPruning("l1_unstructured", amount=0.5, verbose=2, apply_pruning=lambda epoch: epoch == 0)])
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ModelPruning")]
    assert lines[0] == "ModelPruning (L1Unstructured, amount=0.5): 0/282 (0.00%) -> 141/282 (50.00%) pruned"
    assert lines[1].startswith("ModelPruning (L1Unstructured) layer.0.weight: 0/256 (0.00%) -> ")
    assert len(lines) == 5


@pytest.mark.parametrize("kwargs, words", [
    (dict(pruning_fn="l3_unstructured"), r"pruning_fn='l3_unstructured'\) is not one of"),
    (dict(pruning_fn=torch.nn.utils.prune.l1_unstructured), "pass one of"),
    (dict(pruning_fn="random_structured", pruning_dim=0), "use_global_unstructured=True needs an unstructured"),
    (dict(pruning_fn="ln_structured", use_global_unstructured=False), "needs pruning_dim"),
    (dict(pruning_fn="ln_structured", use_global_unstructured=False, pruning_dim=0), "needs pruning_norm"),
    (dict(pruning_fn=torch.nn.utils.prune.L1Unstructured, use_global_unstructured=False), "needs "
                                                                                          "use_global_unstructured"),
    (dict(pruning_fn="l1_unstructured", parameter_names=["scale"]), r"parameter_names=\[..., 'scale'"),
    (dict(pruning_fn="l1_unstructured", amount="half"), "amount='half'"),
    (dict(pruning_fn="l1_unstructured", verbose=3), "verbose=3"),
])
def test_bad_arguments(kwargs, words):
    with pytest.raises(MisconfigurationException, match=words):
        ModelPruning(**kwargs)


def test_parameters_that_are_not_in_the_model():
    stray = torch.nn.Linear(2, 2)
    with pytest.raises(MisconfigurationException, match="names what the model does not have"):
        _fit([ModelPruning("l1_unstructured", parameters_to_prune=[(stray, "weight")])])
    with pytest.raises(MisconfigurationException, match="list of \\(nn.Module, parameter name\\) pairs"):
        _fit([ModelPruning("l1_unstructured", parameters_to_prune=["layer.0.weight"])])

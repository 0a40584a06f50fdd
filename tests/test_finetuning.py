"""BackboneFinetuning resumes exactly: the parameter group it added is rebuilt before the optimizer state is loaded
into it, and the run ends with the weights of one never stopped."""

from __future__ import annotations

import pytest
import torch

import fulmen as L
from fulmen.callbacks import BackboneFinetuning, Callback
from fulmen.demos.boring_classes import BoringModel
from fulmen.utilities.exceptions import MisconfigurationException
from tests.models import quiet_fit, transfer_model


Transfer = transfer_model(BoringModel)


class SaveAtEpochEnd(Callback):
    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == 2:
            trainer.save_checkpoint("epoch2.ckpt")


def _fit(callbacks, ckpt_path=None):
    model = Transfer()
    return model, quiet_fit(model, callbacks, ckpt_path, max_epochs=5, limit_val_batches=0)


def test_resume_after_the_backbone_was_unfrozen():
    full, _ = _fit([BackboneFinetuning(unfreeze_backbone_at_epoch=1), SaveAtEpochEnd()])
    resumed, trainer = _fit([BackboneFinetuning(unfreeze_backbone_at_epoch=1)], ckpt_path="epoch2.ckpt")
    assert len(trainer.optimizers[0].param_groups) == 2
    for name, value in full.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name


def test_backbone_is_frozen_until_its_epoch_and_must_exist():
    model, trainer = _fit([BackboneFinetuning(unfreeze_backbone_at_epoch=10)])
    # train_bn=True (the default) leaves the batch norm learning
    assert [n for n, p in model.backbone.named_parameters() if p.requires_grad] == ["1.weight", "1.bias"]
    assert len(trainer.optimizers[0].param_groups) == 1

    class NoBackbone(BoringModel):
        pass

    trainer = L.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, callbacks=[BackboneFinetuning()])
    with pytest.raises(MisconfigurationException, match="NoBackbone.backbone"):
        trainer.fit(NoBackbone())


def test_a_containers_own_parameters_are_frozen_too():
    """Lightning walks a Sequential as a list of its children and so leaves the Sequential's own parameters
    trainable; fulmen freezes every parameter of what it is given."""
    stem = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    stem.register_parameter("scale", torch.nn.Parameter(torch.ones(1)))
    BackboneFinetuning.freeze(stem, train_bn=False)
    assert not any(p.requires_grad for p in stem.parameters())
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    BackboneFinetuning.unfreeze_and_add_param_group(stem, optimizer, initial_denom_lr=4.0)
    assert len(optimizer.param_groups[1]["params"]) == 5 and optimizer.param_groups[1]["lr"] == 0.25


def test_parameters_already_in_the_optimizer_are_skipped_with_a_warning():
    layer = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(layer.parameters(), lr=1.0)
    with pytest.warns(UserWarning, match="filter\\(lambda p: p.requires_grad"):
        BackboneFinetuning.unfreeze_and_add_param_group(layer, optimizer)
    assert len(optimizer.param_groups) == 1

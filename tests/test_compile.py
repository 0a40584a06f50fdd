"""torch.compile: a compiled LightningModule, a compiled submodule and Trainer(compile=...) train, save plain
state-dict keys and resume. The tests use the aot_eager backend: dynamo and autograd tracing as in production,
without code generation (which needs a C++ compiler and a minute)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import fulmen
from fulmen.demos.boring_classes import BoringModel
from fulmen.utilities.compile import to_uncompiled

BACKEND = {"backend": "aot_eager"}


class Net(BoringModel):
    def __init__(self, compile_submodule: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layer = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 2))
        self.compile_submodule = compile_submodule

    def configure_model(self):
        if self.compile_submodule and not hasattr(self.layer, "_orig_mod"):
            self.layer = torch.compile(self.layer, **BACKEND)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.randn(16, 32, generator=torch.Generator().manual_seed(1)),
                                           batch_size=4)


def fit(model, ckpt_path=None, **kwargs):
    trainer = fulmen.Trainer(max_epochs=2, limit_val_batches=0, logger=False, enable_progress_bar=False,
                             enable_model_summary=False, default_root_dir=".", **kwargs)
    trainer.fit(model, ckpt_path=ckpt_path)
    return trainer


@pytest.fixture(scope="module")
def eager_weights():
    model = Net()
    fulmen.Trainer(max_epochs=2, limit_val_batches=0, logger=False, enable_progress_bar=False,
                   enable_model_summary=False, enable_checkpointing=False).fit(model)
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_a_compiled_module_trains_and_saves_plain_keys(eager_weights):
    model = Net()
    trainer = fit(torch.compile(model, **BACKEND))
    assert trainer.lightning_module is model and model._compiler_ctx is not None  # forward and steps compiled
    torch.testing.assert_close(model.state_dict(), eager_weights)
    saved = torch.load(trainer.checkpoint_callback.best_model_path, weights_only=True)["state_dict"]
    assert set(saved) == set(eager_weights)


def test_a_compiled_submodule_saves_plain_keys_and_resumes(eager_weights, tmp_path):
    class Save(fulmen.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            if trainer.current_epoch == 0:
                trainer.save_checkpoint(tmp_path / "epoch0.ckpt")

    model = Net(compile_submodule=True)
    fit(model, callbacks=[Save()], enable_checkpointing=False)
    assert any("_orig_mod" in k for k in model.state_dict())
    saved = torch.load(tmp_path / "epoch0.ckpt", weights_only=True)["state_dict"]
    assert set(saved) == set(eager_weights)  # no _orig_mod in the file
    resumed = Net(compile_submodule=True)
    fit(resumed, ckpt_path=tmp_path / "epoch0.ckpt", enable_checkpointing=False)
    torch.testing.assert_close(resumed.state_dict(), model.state_dict())
    plain = Net.load_from_checkpoint(tmp_path / "epoch0.ckpt")  # into an uncompiled module too
    assert set(plain.state_dict()) == set(eager_weights)


def test_a_checkpoint_with_orig_mod_keys_loads_into_a_plain_module(tmp_path):
    model = Net()
    checkpoint = {"state_dict": {k.replace("layer.", "layer._orig_mod."): v for k, v in model.state_dict().items()}}
    torch.save(checkpoint, tmp_path / "lightning.ckpt")  # what Lightning writes for a compiled submodule
    loaded = Net.load_from_checkpoint(tmp_path / "lightning.ckpt")
    torch.testing.assert_close(loaded.state_dict(), model.state_dict())


def test_trainer_compile_switch(eager_weights):
    model = Net()
    fit(model, compile=BACKEND, enable_checkpointing=False)
    assert model.forward is not type(model).forward and model._compiler_ctx is not None
    torch.testing.assert_close(model.state_dict(), eager_weights)
    assert to_uncompiled(model).forward.__func__ is type(model).forward


def test_bad_compile_argument():
    with pytest.raises(TypeError, match="compile='yes'"):
        fulmen.Trainer(compile="yes")
    with pytest.raises(TypeError, match=r"torch.compile\(Linear\)"):
        fit(torch.compile(nn.Linear(2, 2), **BACKEND))

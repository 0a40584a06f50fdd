"""The hot path stays shallow: few fulmen frames between Trainer.fit and training_step."""

import traceback

import pytest
import torch

import fulmen
from fulmen.demos.boring_classes import BoringModel, ManualOptimBoringModel


def frames_to_training_step(model_cls, **trainer_kwargs):
    stacks = []

    class Probe(model_cls):
        def training_step(self, batch, batch_idx):
            stacks.append(traceback.extract_stack())
            return super().training_step(batch, batch_idx)

    trainer = fulmen.Trainer(max_steps=1, enable_model_summary=False, limit_val_batches=0, **trainer_kwargs)
    trainer.fit(Probe())
    stack = stacks[0]
    start = max(i for i, f in enumerate(stack) if f.name == "fit" and f.filename.endswith("trainer.py"))
    inner = stack[start + 1:-1]  # strictly between Trainer.fit and training_step
    return [f for f in inner if "/fulmen/" in f.filename]


def test_default_path_has_at_most_four_frames_in_four_files():
    frames = frames_to_training_step(BoringModel)
    assert len(frames) <= 4, [f"{f.filename}:{f.name}" for f in frames]
    assert len({f.filename for f in frames}) <= 4


@pytest.mark.parametrize("path", ["manual", "accumulation", "bf16"])
def test_other_paths_have_at_most_four_frames(path):
    # Each step function opens with the shared prologue (core/step.py), which returns before training_step runs:
    # it must not become a frame around it.
    if path == "manual":
        frames = frames_to_training_step(ManualOptimBoringModel)
    elif path == "accumulation":
        frames = frames_to_training_step(BoringModel, accumulate_grad_batches=2)
    else:
        frames = frames_to_training_step(BoringModel, precision="bf16-mixed")
    assert len(frames) <= 4, [f"{f.filename}:{f.name}" for f in frames]


def test_closure_path_has_at_most_six_frames():
    class Overridden(BoringModel):
        def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None):
            optimizer.step(closure=optimizer_closure)

    frames = frames_to_training_step(Overridden)
    assert len(frames) <= 6, [f"{f.filename}:{f.name}" for f in frames]


def test_lbfgs_uses_the_closure_and_trains():
    class LBFGSModel(BoringModel):
        def configure_optimizers(self):
            return torch.optim.LBFGS(self.parameters(), lr=0.1, max_iter=3)

    torch.manual_seed(0)
    model = LBFGSModel()
    before = model.layer.weight.detach().clone()
    trainer = fulmen.Trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=0, enable_model_summary=False)
    trainer.fit(model)
    assert trainer.global_step == 3
    assert not torch.equal(before, model.layer.weight)

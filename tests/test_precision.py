"""Precision on the CPU: each mode trains to the weights of a hand-written loop using the same autocast, dtype and
GradScaler (inf gradients skip the step, accumulation, clipping, manual optimization), plugins, and clear errors.
The same modes on CUDA are in tests/test_cuda.py."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

import fulmen
from fulmen.callbacks import Callback
from fulmen.plugins import DoublePrecision, HalfPrecision, MixedPrecision, Precision
from fulmen.utilities.exceptions import MisconfigurationException

STEPS = 6


def batches():
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(8, 16, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(STEPS)]


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 3))


class Classifier(fulmen.LightningModule):
    def __init__(self, manual=False, inf_at=None):
        super().__init__()
        self.net = net()
        self.automatic_optimization = not manual
        self.inf_at = inf_at

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        if self.automatic_optimization:
            return loss
        opt = self.optimizers()
        opt.zero_grad()
        self.manual_backward(loss)
        self.clip_gradients(opt, gradient_clip_val=0.5)
        opt.step()

    def on_after_backward(self):
        if self.trainer.global_step == self.inf_at:
            self.net[0].weight.grad[0, 0] = float("inf")  # an overflow, as float16 produces

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


def fit(model, **kwargs):
    trainer = fulmen.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                             enable_checkpointing=False, **kwargs)
    trainer.fit(model, torch.utils.data.DataLoader(batches(), batch_size=None))  # the batches as they are
    return trainer


def by_hand(dtype=None, autocast=None, scaler=None, accumulate=1, clip=None, inf_at=None):
    model = net()
    if dtype is not None:
        model = model.to(dtype)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    step = 0
    for i, (x, y) in enumerate(batches()):
        if dtype is not None:
            x = x.to(dtype)
        with torch.autocast("cpu", dtype=autocast) if autocast else torch.autocast("cpu", enabled=False):
            loss = nn.functional.cross_entropy(model(x), y) / accumulate
        if i % accumulate == 0:
            opt.zero_grad()
        (scaler.scale(loss) if scaler else loss).backward()
        if step == inf_at:
            model[0].weight.grad[0, 0] = float("inf")
        if (i + 1) % accumulate == 0:
            if scaler:
                scaler.unscale_(opt)
            if clip:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            if scaler:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            step += 1
    return model


def same(model, reference):
    for (name, a), b in zip(model.net.state_dict().items(), reference.state_dict().values()):
        assert a.dtype == b.dtype and torch.equal(a, b), name


def test_bf16_mixed_matches_autocast_by_hand():
    model = Classifier()
    fit(model, precision="bf16-mixed")
    same(model, by_hand(autocast=torch.bfloat16))


@pytest.mark.parametrize("precision", ["64-true", 64])
def test_64_true_matches_float64_by_hand(precision):
    model = Classifier()
    fit(model, precision=precision)
    same(model, by_hand(dtype=torch.float64))
    assert model.dtype == torch.float64


def test_bf16_true_trains_in_bfloat16():
    model = Classifier()
    fit(model, precision="bf16-true")
    same(model, by_hand(dtype=torch.bfloat16))


@pytest.mark.parametrize("accumulate, clip", [(1, None), (2, 0.5)])
def test_16_mixed_grad_scaler_skips_inf_steps_and_matches_by_hand(accumulate, clip):
    """A float16 GradScaler on the CPU (through the plugin: Trainer(precision='16-mixed') on the CPU falls back to
    bf16-mixed, as in Lightning): a step whose gradients hold an inf is skipped and the scale halves."""
    scales = []

    class Scale(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            scales.append(trainer.scaler.get_scale())

    model = Classifier(inf_at=1)
    plugin = MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=2.0 ** 8))
    trainer = fit(model, plugins=[plugin], accumulate_grad_batches=accumulate, gradient_clip_val=clip,
                  callbacks=[Scale()])
    reference = by_hand(autocast=torch.float16, scaler=torch.amp.GradScaler("cpu", init_scale=2.0 ** 8),
                        accumulate=accumulate, clip=clip, inf_at=1)
    same(model, reference)
    window_ends = scales[accumulate - 1::accumulate]
    assert window_ends[1] == 2.0 ** 7 and window_ends[0] == 2.0 ** 8  # halved at the skipped step
    assert trainer.global_step == STEPS // accumulate  # a skipped step still counts, as in Lightning
    trainer.save_checkpoint("amp.ckpt")
    assert torch.load("amp.ckpt", weights_only=True)["MixedPrecision"]["scale"] == 2.0 ** 7


def test_gradients_are_unscaled_before_clipping_and_the_hook():
    seen = {}

    class Look(Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            seen.setdefault(trainer.scaler.get_scale(), pl_module.net[0].weight.grad.clone())

    for init in (2.0 ** 4, 2.0 ** 12):
        plugin = MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=init))
        fit(Classifier(), plugins=[plugin], max_steps=1, callbacks=[Look()])
    small, large = seen.values()
    torch.testing.assert_close(small, large, rtol=1e-2, atol=1e-4)  # not 256 times larger


def test_manual_backward_scales_the_loss_and_clip_gradients_clips_true_gradients():
    model = Classifier(manual=True)
    plugin = MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=2.0 ** 8))
    trainer = fit(model, plugins=[plugin])
    same(model, by_hand(autocast=torch.float16, scaler=torch.amp.GradScaler("cpu", init_scale=2.0 ** 8), clip=0.5))
    assert trainer.global_step == STEPS


def test_16_mixed_on_the_cpu_falls_back_to_bf16_with_a_warning():
    with pytest.warns(UserWarning, match="'16-mixed' is not supported on the CPU; using 'bf16-mixed'"):
        trainer = fulmen.Trainer(precision="16-mixed", logger=False)
    assert trainer.precision == "bf16-mixed" and trainer.scaler is None


def test_plugins():
    trainer = fulmen.Trainer(plugins=HalfPrecision("bf16-true"), logger=False)
    assert trainer.precision == "bf16-true" and isinstance(trainer.precision_plugin, HalfPrecision)
    assert fulmen.Trainer(plugins=[DoublePrecision()], logger=False).precision == "64-true"
    assert isinstance(fulmen.Trainer(logger=False).precision_plugin, Precision)
    from fulmen.plugins.precision import MixedPrecision as Same

    assert Same is MixedPrecision


@pytest.mark.parametrize("make, error, words", [
    (lambda: fulmen.Trainer(precision="bf16-mixed", plugins=[DoublePrecision()]), MisconfigurationException,
     "both set the precision"),
    (lambda: fulmen.Trainer(plugins=[DoublePrecision(), HalfPrecision()]), MisconfigurationException,
     "two Precision plugins"),
    (lambda: fulmen.Trainer(plugins=["bf16"]), TypeError, "not strings"),
    (lambda: fulmen.Trainer(plugins=[object()]), TypeError, "not a plugin fulmen runs"),
    (lambda: fulmen.Trainer(precision="8-true"), ValueError, r"precision='8-true'\) is not supported"),
    (lambda: fulmen.Trainer(precision="transformer-engine"), MisconfigurationException, "CUDA GPUs only"),
    (lambda: MixedPrecision("bf16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu")), ValueError,
     "needs no loss scaling"),
    (lambda: MixedPrecision("32-mixed", "cpu"), ValueError, "precision='32-mixed'"),
    (lambda: HalfPrecision("16-mixed"), ValueError, "'16-true' or 'bf16-true'"),
])
def test_bad_precision_settings(make, error, words):
    with pytest.raises(error, match=words):
        make()


def test_a_grad_scaler_cannot_step_lbfgs():
    class WithLBFGS(Classifier):
        def configure_optimizers(self):
            return torch.optim.LBFGS(self.parameters())

    with pytest.raises(MisconfigurationException, match="GradScaler, which cannot step LBFGS"):
        fit(WithLBFGS(), plugins=[MixedPrecision("16-mixed", "cpu")])


class _Marking(Precision):
    """A precision whose context marks what runs inside it, as autocast or an FP8 context would."""

    def __init__(self) -> None:
        self.inside = False
        self.autocast = self._context

    @contextlib.contextmanager
    def _context(self):
        self.inside = True
        try:
            yield
        finally:
            self.inside = False


@pytest.mark.parametrize("path", ["automatic", "closure", "manual"])
def test_every_step_runs_in_the_precision_context(path):
    from fulmen.demos.boring_classes import BoringModel

    plugin = _Marking()
    seen = []

    class Model(BoringModel):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = path != "manual"

        def training_step(self, batch, batch_idx):
            seen.append(("training_step", plugin.inside))
            out = super().training_step(batch, batch_idx)
            if path == "manual":
                opt = self.optimizers()
                opt.zero_grad()
                self.manual_backward(out["loss"])
                opt.step()
            return out

        def validation_step(self, batch, batch_idx):
            seen.append(("validation_step", plugin.inside))
            return super().validation_step(batch, batch_idx)

        def test_step(self, batch, batch_idx):
            seen.append(("test_step", plugin.inside))
            return super().test_step(batch, batch_idx)

        def predict_step(self, batch, batch_idx):
            seen.append(("predict_step", plugin.inside))
            return super().predict_step(batch, batch_idx)

        if path == "closure":
            def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None):
                optimizer.step(closure=optimizer_closure)

    trainer = fulmen.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1, limit_test_batches=1,
                             limit_predict_batches=1,
                             num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, plugins=[plugin])
    model = Model()
    trainer.fit(model)
    trainer.test(model, verbose=False)
    trainer.predict(model)
    assert {name for name, _ in seen} == {"training_step", "validation_step", "test_step", "predict_step"}
    assert all(inside for _, inside in seen), seen

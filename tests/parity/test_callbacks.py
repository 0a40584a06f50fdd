"""Monitoring and scheduling callbacks on both frameworks: LearningRateMonitor sends the same values under the same
names at the same steps, GradientAccumulationScheduler trains to the same weights, LambdaCallback runs the same
hooks in the same order."""

from __future__ import annotations

import importlib

import pytest
import torch

from tests.models import swa_model, transfer_model
from tests.parity.recorder import load, quiet_trainer
from tests.parity.test_logger_calls import recording_logger

pytest.importorskip("pytorch_lightning")


def _callbacks(framework):
    return importlib.import_module("fulmen.callbacks" if framework == "fulmen" else "pytorch_lightning.callbacks")


def lr_model(framework, optimizer, scheduler):
    pl, demos = load(framework)

    class Model(demos.BoringModel):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.head = torch.nn.Linear(2, 2)

        def configure_optimizers(self):
            groups = [{"params": self.layer.parameters()},
                      {"params": self.head.parameters(), "lr": 0.05, "name": "head"}]
            opt = (torch.optim.Adam(groups, lr=0.01, weight_decay=0.1) if optimizer == "adam"
                   else torch.optim.SGD(self.layer.parameters(), lr=0.1, momentum=0.9))
            if scheduler is None:
                return opt
            return {"optimizer": opt, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.StepLR(opt, 2, 0.5),
                                                        **scheduler}}

    return pl, Model


@pytest.mark.parametrize("optimizer, scheduler, monitor_kwargs", [
    ("adam", {"interval": "step"}, dict(log_momentum=True, log_weight_decay=True)),
    ("adam", {"interval": "epoch", "name": "my_lr"}, {}),
    ("sgd", None, dict(log_momentum=True)),
    ("sgd", {"interval": "epoch"}, dict(logging_interval="step")),
    ("adam", {"interval": "step"}, dict(logging_interval="epoch")),
])
def test_learning_rate_monitor_matches(optimizer, scheduler, monitor_kwargs):
    got = {}
    for framework in ("fulmen", "pytorch_lightning"):
        pl, Model = lr_model(framework, optimizer, scheduler)
        logger = recording_logger(framework)
        monitor = _callbacks(framework).LearningRateMonitor(**monitor_kwargs)
        trainer = quiet_trainer(pl, logger=logger, callbacks=[monitor], max_epochs=3, limit_train_batches=4,
                                limit_val_batches=0, log_every_n_steps=2)
        trainer.fit(Model())
        calls = [(step, {k: round(v, 8) for k, v in m.items() if k.startswith(("lr-", "my_lr"))})
                 for step, m in logger.calls]
        got[framework] = ([c for c in calls if c[1]], {k: [round(v, 8) for v in vals] for k, vals in monitor.lrs.items()},
                          sorted(k for k in trainer.callback_metrics if k.startswith(("lr-", "my_lr"))))
    assert got["fulmen"] == got["pytorch_lightning"]
    assert got["fulmen"][0]


def test_learning_rate_monitor_needs_a_logger():
    from fulmen.callbacks import LearningRateMonitor
    from fulmen.utilities.exceptions import MisconfigurationException

    pl, Model = lr_model("fulmen", "sgd", None)
    with pytest.raises(MisconfigurationException, match="needs a logger"):
        quiet_trainer(pl, callbacks=[LearningRateMonitor()], max_steps=1).fit(Model())


def test_gradient_accumulation_scheduler_matches():
    weights, steps = {}, {}
    for framework in ("fulmen", "pytorch_lightning"):
        pl, demos = load(framework)
        torch.manual_seed(0)
        model = demos.BoringModel()
        scheduler = _callbacks(framework).GradientAccumulationScheduler({1: 2, 2: 3})
        trainer = quiet_trainer(pl, callbacks=[scheduler], max_epochs=3, limit_train_batches=7, limit_val_batches=0)
        trainer.fit(model)
        weights[framework], steps[framework] = model.layer.weight.detach().clone(), trainer.global_step
    assert steps["fulmen"] == steps["pytorch_lightning"] == 7 + 4 + 3
    torch.testing.assert_close(weights["fulmen"], weights["pytorch_lightning"], rtol=0, atol=0)


def test_gradient_accumulation_scheduler_refuses_a_trainer_factor():
    from fulmen.callbacks import GradientAccumulationScheduler

    pl, demos = load("fulmen")
    trainer = quiet_trainer(pl, callbacks=[GradientAccumulationScheduler({0: 2})], accumulate_grad_batches=2,
                            max_steps=1)
    with pytest.raises(ValueError, match="accumulate_grad_batches=2"):
        trainer.fit(demos.BoringModel())


def test_lambda_callback_runs_the_same_hooks():
    names = ("setup", "on_fit_start", "on_train_epoch_start", "on_train_batch_end", "on_validation_end",
             "on_train_epoch_end", "on_fit_end", "teardown")
    seen = {}
    for framework in ("fulmen", "pytorch_lightning"):
        pl, demos = load(framework)
        calls = []
        hooks = {name: (lambda *args, name=name, **kwargs: calls.append(name)) for name in names}
        trainer = quiet_trainer(pl, callbacks=[_callbacks(framework).LambdaCallback(**hooks)], max_epochs=2,
                                limit_train_batches=2, limit_val_batches=1)
        trainer.fit(demos.BoringModel())
        seen[framework] = calls
    assert seen["fulmen"] == seen["pytorch_lightning"] and len(seen["fulmen"]) > 8


@pytest.mark.parametrize("kind, kwargs", [
    ("EMAWeightAveraging", dict(decay=0.9)),
    ("EMAWeightAveraging", dict(decay=0.5, update_every_n_steps=2, update_starting_at_step=3,
                                update_starting_at_epoch=1)),
    ("WeightAveraging", {}),
])
def test_weight_averaging_matches(kind, kwargs):
    results = {}
    for framework in ("fulmen", "pytorch_lightning"):
        pl, demos = load(framework)
        seen = []

        class Model(demos.BoringModel):
            def validation_step(self, batch, batch_idx):
                seen.append(self.layer.weight.detach().clone())  # validation sees the averaged weights
                return super().validation_step(batch, batch_idx)

        torch.manual_seed(0)
        model = Model()
        callback = getattr(_callbacks(framework), kind)(**kwargs)
        trainer = quiet_trainer(pl, callbacks=[callback], max_epochs=3, limit_train_batches=5, limit_val_batches=1,
                                accumulate_grad_batches=2, num_sanity_val_steps=0)
        trainer.fit(model)
        trainer.save_checkpoint(f"{framework}.ckpt")
        saved = torch.load(f"{framework}.ckpt", weights_only=True)
        results[framework] = (model.layer.weight.detach().clone(), torch.stack(seen),
                              saved["state_dict"]["layer.weight"], saved["callbacks"], sorted(saved))
    ours, theirs = results["fulmen"], results["pytorch_lightning"]
    for a, b in zip(ours[:3], theirs[:3]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert ours[3] == theirs[3]
    assert {"current_model_state", "averaging_state"} <= set(ours[4]) and {"current_model_state",
                                                                           "averaging_state"} <= set(theirs[4])


@pytest.mark.parametrize("kwargs", [dict(unfreeze_backbone_at_epoch=1),
                                    dict(unfreeze_backbone_at_epoch=2, backbone_initial_lr=0.001, train_bn=False,
                                         lambda_func=lambda epoch: 3.0, should_align=False)])
def test_backbone_finetuning_matches(kwargs):
    results = {}
    for framework in ("fulmen", "pytorch_lightning"):
        pl, demos = load(framework)
        Transfer = transfer_model(demos.BoringModel)
        lrs = []

        class Record(pl.Callback):
            def on_train_epoch_end(self, trainer, pl_module):
                lrs.append([g["lr"] for g in trainer.optimizers[0].param_groups])

        model = Transfer()
        callback = _callbacks(framework).BackboneFinetuning(**kwargs)
        trainer = quiet_trainer(pl, callbacks=[callback, Record()], max_epochs=5, limit_train_batches=5,
                                limit_val_batches=0)
        trainer.fit(model)
        results[framework] = (lrs, {k: v.clone() for k, v in model.state_dict().items()}, callback.state_dict())
    ours, theirs = results["fulmen"], results["pytorch_lightning"]
    assert ours[0] == theirs[0] and len(ours[0][-1]) == 2
    for name, value in theirs[1].items():
        torch.testing.assert_close(ours[1][name], value, rtol=0, atol=0, msg=name)
    frozen = ours[2].pop("frozen_parameters")  # fulmen's addition, for an exact resume
    assert ours[2] == theirs[2] and frozen == []  # everything is unfrozen by the end


@pytest.mark.parametrize("train_bn", [True, False])
def test_finetuning_helpers_match(train_bn):
    """freeze / filter_params / unfreeze_and_add_param_group pick the same parameters, on a nested model with
    batch norm and a ModuleDict. (A Sequential's own parameters differ: tests/test_finetuning.py.)"""

    def build():
        torch.manual_seed(0)
        model = torch.nn.ModuleDict({"stem": torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)),
                                     "head": torch.nn.Linear(4, 2)})
        return model

    seen = {}
    for framework in ("fulmen", "pytorch_lightning"):
        base = _callbacks(framework).BaseFinetuning
        model = build()
        names = {id(p): n for n, p in model.named_parameters()}
        base.freeze(model, train_bn=train_bn)
        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        tracking = [m.track_running_stats for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        frozen = [names[id(p)] for p in base.filter_params(model, train_bn=train_bn, requires_grad=False)]
        optimizer = torch.optim.SGD(model.head.parameters(), lr=0.5)
        base.unfreeze_and_add_param_group(model.stem, optimizer, train_bn=train_bn)
        added = [(names[id(p)], group["lr"]) for group in optimizer.param_groups[1:] for p in group["params"]]
        seen[framework] = (trainable, tracking, frozen, added, len(base.flatten_modules(model)))
    assert seen["fulmen"] == seen["pytorch_lightning"]


def run_swa(framework, batch_norm, scheduler, **kwargs):
    pl, demos = load(framework)
    Model = swa_model(demos.BoringModel, batch_norm, scheduler)
    lrs = []

    class Record(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            lrs.append(round(trainer.optimizers[0].param_groups[0]["lr"], 10))

    model = Model()
    swa = _callbacks(framework).StochasticWeightAveraging(**kwargs)
    torch.manual_seed(2)
    trainer = quiet_trainer(pl, callbacks=[swa, Record()], max_epochs=5, limit_val_batches=0)
    trainer.fit(model)
    return model, swa, trainer, lrs


@pytest.mark.parametrize("scheduler, kwargs", [
    (True, dict(swa_lrs=0.05, swa_epoch_start=3, annealing_epochs=2)),
    (False, dict(swa_lrs=[0.02], swa_epoch_start=0.4, annealing_epochs=3, annealing_strategy="linear")),
    (True, dict(swa_lrs=0.01, swa_epoch_start=1, annealing_epochs=1,
                avg_fn=lambda avg, cur, n: 0.5 * avg + 0.5 * cur)),
])
def test_stochastic_weight_averaging_matches(scheduler, kwargs):
    seen = {}
    for framework in ("fulmen", "pytorch_lightning"):
        model, swa, trainer, lrs = run_swa(framework, False, scheduler, **kwargs)
        seen[framework] = (model.state_dict(), lrs, swa.state_dict(), trainer.current_epoch, trainer.global_step)
    ours, theirs = seen["fulmen"], seen["pytorch_lightning"]
    torch.testing.assert_close(ours[0], theirs[0], rtol=0, atol=0)
    assert ours[1:2] + ours[3:] == theirs[1:2] + theirs[3:]
    assert ours[2].pop("batch_norm_update") is False  # fulmen's addition, for an exact resume
    torch.testing.assert_close(ours[2].pop("average_model_state"), theirs[2].pop("average_model_state"), rtol=0,
                               atol=0)
    assert ours[2] == theirs[2]


def test_stochastic_weight_averaging_with_batch_norm():
    """With batch norm both run an extra epoch that re-estimates the statistics for the averaged weights. fulmen
    ends with exactly those weights; Lightning's extra epoch still calls optimizer.step at its end (on the
    gradients left from the last real step), which moves them off the average."""
    seen = {}
    for framework in ("fulmen", "pytorch_lightning"):
        model, swa, trainer, lrs = run_swa(framework, True, True, swa_lrs=0.05, swa_epoch_start=2)
        seen[framework] = (model, swa, trainer, lrs)
    (ours, our_swa, our_trainer, our_lrs), (theirs, their_swa, their_trainer, their_lrs) = \
        seen["fulmen"], seen["pytorch_lightning"]
    assert our_trainer.current_epoch == their_trainer.current_epoch == 6 and our_trainer.max_epochs == 5
    assert our_lrs == their_lrs and len(our_lrs) == 6
    assert our_trainer.global_step == 5 * 6 and their_trainer.global_step == 5 * 6 + 1
    average = dict(their_swa._average_model.named_parameters())
    for name, value in ours.named_parameters():
        torch.testing.assert_close(value, average[name], rtol=0, atol=0, msg=name)
    for name, value in ours.named_buffers():  # statistics gathered over the same batches with the same weights
        torch.testing.assert_close(value, dict(theirs.named_buffers())[name], msg=name)
    assert ours.layer[1].momentum == theirs.layer[1].momentum == 0.1
    assert not torch.equal(theirs.layer[0].weight, average["layer.0.weight"])


def test_throughput_monitor_logs_the_same_keys_counts_and_steps():
    """Same keys at the same steps with the same running counts, for fit (with a sanity check, accumulation and
    two validation loaders), then validate and test; the rates are timings, so only their presence is compared."""
    seen = {}
    for framework in ("fulmen", "pytorch_lightning"):
        pl, demos = load(framework)

        class Model(demos.BoringModel):
            flops_per_batch = 1000

            def val_dataloader(self):
                return [torch.utils.data.DataLoader(torch.randn(8, 32), batch_size=2),
                        torch.utils.data.DataLoader(torch.randn(6, 32), batch_size=2)]

            def validation_step(self, batch, batch_idx, dataloader_idx=0):
                return super().validation_step(batch, batch_idx)

            test_dataloader = val_dataloader

            def test_step(self, batch, batch_idx, dataloader_idx=0):
                return super().test_step(batch, batch_idx)

        logger = recording_logger(framework)
        monitor = _callbacks(framework).ThroughputMonitor(batch_size_fn=lambda b: b.shape[0],
                                                          length_fn=lambda b: b.numel(), window_size=3)
        trainer = quiet_trainer(pl, logger=logger, callbacks=[monitor], max_epochs=2, limit_train_batches=5,
                                limit_val_batches=3, num_sanity_val_steps=2, log_every_n_steps=2,
                                accumulate_grad_batches=2)
        model = Model()
        trainer.fit(model)
        trainer.validate(model, verbose=False)
        trainer.test(model, verbose=False)
        counts = ("time", "_sec", "mfu")
        seen[framework] = [(step, sorted(m), {k: v for k, v in m.items() if not k.endswith(counts)})
                           for step, m in logger.calls]
        assert all(v > 0 for _, m in logger.calls for k, v in m.items() if k.endswith("_sec"))
        assert "test/device/flops_per_sec" in trainer.logged_metrics
    assert seen["fulmen"] == seen["pytorch_lightning"] and len(seen["fulmen"]) == 15


@pytest.mark.parametrize("cpu_stats", [None, False])
def test_device_stats_monitor_logs_the_same_keys_at_the_same_steps(cpu_stats):
    seen = {}
    for framework in ("fulmen", "pytorch_lightning"):
        pl, demos = load(framework)
        logger = recording_logger(framework)
        monitor = _callbacks(framework).DeviceStatsMonitor(cpu_stats=cpu_stats)
        trainer = quiet_trainer(pl, logger=logger, callbacks=[monitor], max_epochs=2, limit_train_batches=5,
                                limit_val_batches=3, num_sanity_val_steps=2, log_every_n_steps=2,
                                accumulate_grad_batches=2)
        model = demos.BoringModel()
        trainer.fit(model)
        trainer.test(model, verbose=False)
        seen[framework] = [(step, sorted(m)) for step, m in logger.calls]
    assert seen["fulmen"] == seen["pytorch_lightning"]
    assert len(seen["fulmen"]) == (0 if cpu_stats is False else 80)


@pytest.mark.parametrize("losses, kwargs", [
    ([1.0, 0.9, 0.8, 0.85, 0.7, 0.6, 5.0, 0.5], {}),
    ([1.0, 0.9, 0.8, 0.85, 0.7, 0.6, 5.0, 0.5], dict(atol=10.0)),
    ([1.0, 2.0, 3.0, 2.5, 4.0, 0.1, 5.0, 6.0], dict(mode="max", rtol=0.5, window=3)),
    ([1.0, 1.1, 1.3, 1.2, 1.9, 1.0, 1.0, 1.0], dict(rtol=None, atol=0.5, warmup=3)),
    ([1.0, 0.9, float("nan"), 0.8, 0.7, 0.6, 0.5, 0.4], {}),
    ([1.0, 0.9, float("nan"), 0.8, 0.7, 0.6, 3.0, 0.4], dict(finite_only=False)),
])
def test_spike_detection_matches(losses, kwargs, tmp_path):
    seen = {}
    for framework in ("fulmen", "pytorch_lightning"):
        pl, demos = load(framework)

        class Scripted(demos.BoringModel):
            def training_step(self, batch, batch_idx):
                return self.layer(batch).sum() * 0 + losses[batch_idx]

        path = tmp_path / framework / "bad.json"
        spike = _callbacks(framework).SpikeDetection(exclude_batches_path=str(path), **kwargs)
        trainer = quiet_trainer(pl, callbacks=[spike], max_epochs=1, limit_train_batches=len(losses),
                                limit_val_batches=0)
        try:
            trainer.fit(Scripted())
            stopped = None
        except RuntimeError as err:
            stopped = (type(err).__name__, str(err))
        seen[framework] = (stopped, path.read_text() if path.exists() else None, spike.bad_batches)
    assert seen["fulmen"] == seen["pytorch_lightning"]


@pytest.mark.parametrize("kwargs", [
    dict(pruning_fn="l1_unstructured", amount=0.3, apply_pruning=lambda epoch: epoch == 1),
    dict(pruning_fn="l1_unstructured", amount=0.3, use_lottery_ticket_hypothesis=False),
    dict(pruning_fn="l1_unstructured", use_global_unstructured=False, use_lottery_ticket_hypothesis=False,
         amount=lambda epoch: 0.2 if epoch % 2 == 0 else 0, parameter_names=["weight"]),
    dict(pruning_fn="ln_structured", use_global_unstructured=False, pruning_dim=0, pruning_norm=2, amount=0.25,
         parameter_names=["weight"], use_lottery_ticket_hypothesis=False,
         make_pruning_permanent=False, prune_on_train_epoch_end=False),
    dict(pruning_fn="random_unstructured", amount=0.25, resample_parameters=True,
         use_lottery_ticket_hypothesis=lambda epoch: epoch == 1),
    dict(pruning_fn="l1_unstructured", amount=0.5, apply_pruning=lambda epoch: epoch == 1, verbose=2),
])
def test_model_pruning_matches(kwargs):
    """The same weights, and checkpoints, under each kind of pruning. (The lottery ticket over several rounds
    differs on purpose: tests/test_pruning.py.)"""
    seen = {}
    for framework in ("fulmen", "pytorch_lightning"):
        pl, demos = load(framework)
        Model = swa_model(demos.BoringModel, batch_norm=False, scheduler=False)
        saved = []

        class Save(pl.Callback):
            def on_train_epoch_end(self, trainer, pl_module):
                trainer.save_checkpoint(f"{framework}.ckpt")
                saved.append(torch.load(f"{framework}.ckpt", weights_only=True)["state_dict"])

        pruning = _callbacks(framework).ModelPruning(**kwargs)
        model = Model()
        torch.manual_seed(3)
        trainer = quiet_trainer(pl, callbacks=[pruning, Save()], max_epochs=3, limit_val_batches=2)
        trainer.fit(model)
        seen[framework] = (model.state_dict(), saved)
    ours, theirs = seen["fulmen"], seen["pytorch_lightning"]
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    assert any(float((v == 0).float().mean()) > 0.2 for v in ours[0].values())  # something was pruned

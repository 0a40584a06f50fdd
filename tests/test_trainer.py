"""Trainer features: limits, stopping, data sources, optimizers, logging, hparams and seeding."""

import time

import pytest
import torch
from torch.utils.data import DataLoader

import fulmen
from fulmen.demos.boring_classes import BoringDataModule, BoringModel, RandomDataset, RandomIterableDataset
from fulmen.utilities import CombinedLoader


def make_trainer(**kwargs):
    kwargs.setdefault("enable_model_summary", False)
    return fulmen.Trainer(**kwargs)


def test_golden_losses_for_a_fixed_seed():
    """A fixed seed gives fixed losses: a change in step order or accumulation would move them."""
    losses = []

    class Golden(BoringModel):
        def training_step(self, batch, batch_idx):
            out = super().training_step(batch, batch_idx)
            losses.append(out["loss"].item())
            return out

    fulmen.seed_everything(42, verbose=False)
    make_trainer(max_epochs=1, limit_train_batches=4, limit_val_batches=0, accumulate_grad_batches=2,
                 gradient_clip_val=0.5).fit(Golden())
    expected = [1.2997, 1.3212, 1.9546, 0.7138]  # pytorch-lightning 2.6.6 gives the same
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(expected), rtol=0, atol=1e-4)


class _WatchesBackward(fulmen.Callback):
    """Overrides a hook around the backward, which sends the automatic step down its general path."""

    def on_before_backward(self, trainer, pl_module, loss):
        pass


class _ClipsFromEpochOne(fulmen.Callback):
    def on_train_epoch_start(self, trainer, pl_module):
        trainer.gradient_clip_val = 0.01 if trainer.current_epoch >= 1 else None


@pytest.mark.parametrize("accumulate", [1, 3])
def test_the_plain_step_and_the_step_with_hooks_train_alike(accumulate):
    """With no hook, override or scaler around the torch calls, the automatic step calls zero_grad, backward and
    step directly; the weights come out bit for bit as on the general path, clipping set mid-fit included."""
    weights, plain = [], []
    for extra in ([], [_WatchesBackward()]):
        fulmen.seed_everything(3, verbose=False)
        model = BoringModel()
        trainer = make_trainer(max_epochs=2, limit_train_batches=7, limit_val_batches=0, logger=False,
                               enable_checkpointing=False, enable_progress_bar=False,
                               accumulate_grad_batches=accumulate, callbacks=[_ClipsFromEpochOne(), *extra])
        trainer.fit(model)
        weights.append([p.detach().clone() for p in model.parameters()])
        plain.append(trainer.state.plain_step)
    assert plain == [True, False]
    for a, b in zip(*weights):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_stops_at_max_steps_inside_an_epoch():
    trainer = make_trainer(max_steps=3, limit_val_batches=0)
    trainer.fit(BoringModel())
    # The interrupted epoch still ends (on_train_epoch_end runs), so it counts, as in Lightning.
    assert trainer.global_step == 3 and trainer.current_epoch == 1


def test_min_epochs_overrides_should_stop():
    class StopEarly(BoringModel):
        def on_train_batch_end(self, outputs, batch, batch_idx):
            self.trainer.should_stop = True

    trainer = make_trainer(max_epochs=5, min_epochs=2, limit_train_batches=3, limit_val_batches=0)
    trainer.fit(StopEarly())
    assert trainer.current_epoch == 2


def test_on_train_batch_start_minus_one_ends_the_epoch():
    class Skip(BoringModel):
        def on_train_batch_start(self, batch, batch_idx):
            return -1 if batch_idx == 2 else None

    trainer = make_trainer(max_epochs=2, limit_train_batches=5, limit_val_batches=0)
    trainer.fit(Skip())
    assert trainer.global_step == 4 and trainer.current_epoch == 2


def test_iterable_dataset_with_max_steps():
    trainer = make_trainer(max_steps=7, limit_val_batches=0)
    trainer.fit(BoringModel(), DataLoader(RandomIterableDataset(32, 5)))
    assert trainer.global_step == 7 and trainer.current_epoch == 2


def test_infinite_generator_with_max_steps():
    def forever():
        while True:
            yield torch.randn(2, 32)

    trainer = make_trainer(max_steps=5, max_epochs=-1, limit_val_batches=0)
    trainer.fit(BoringModel(), forever())
    assert trainer.global_step == 5


def test_max_time_stops_training():
    class Slow(BoringModel):
        def training_step(self, batch, batch_idx):
            time.sleep(0.02)
            return super().training_step(batch, batch_idx)

    trainer = make_trainer(max_time={"seconds": 0.1}, limit_val_batches=0)
    start = time.monotonic()
    trainer.fit(Slow())
    assert time.monotonic() - start < 120 and 0 < trainer.global_step < 64  # stopped by the time, not the data


def test_fast_dev_run():
    trainer = make_trainer(fast_dev_run=2)
    trainer.fit(BoringModel())
    assert trainer.global_step == 2 and trainer.num_val_batches == [2]


def test_limit_fraction_and_overfit_batches():
    trainer = make_trainer(max_epochs=1, limit_train_batches=0.25, limit_val_batches=0.5)
    trainer.fit(BoringModel())
    assert trainer.num_training_batches == 16 and trainer.num_val_batches == [32]
    data = DataLoader(RandomDataset(32, 16), shuffle=True)
    seen = []

    class Record(BoringModel):
        def training_step(self, batch, batch_idx):
            seen.append(batch.clone())
            return super().training_step(batch, batch_idx)

    make_trainer(max_epochs=2, overfit_batches=3, limit_val_batches=0).fit(Record(), data)
    assert len(seen) == 6
    for a, b in zip(seen[:3], seen[3:]):
        assert torch.equal(a, b)  # the same batches, in order, every epoch


def test_num_sanity_val_steps_all_and_check_val_every_n_epoch():
    runs = []

    class Count(BoringModel):
        def on_validation_start(self):
            runs.append((self.trainer.sanity_checking, self.current_epoch))

    trainer = make_trainer(max_epochs=4, limit_train_batches=2, limit_val_batches=3, num_sanity_val_steps=-1,
                           check_val_every_n_epoch=2)
    trainer.fit(Count())
    assert runs == [(True, 0), (False, 1), (False, 3)]
    assert trainer.num_sanity_val_batches == [3]


def test_the_sanity_check_leaves_the_random_state_alone():
    """As in Lightning: the sanity check (dropout in the val step) draws nothing that training would otherwise
    get, so a fit with it ends with the weights of a fit without it."""

    class Noisy(BoringModel):
        def training_step(self, batch, batch_idx):
            return super().training_step(torch.nn.functional.dropout(batch, 0.5), batch_idx)

        def validation_step(self, batch, batch_idx):
            return super().validation_step(torch.nn.functional.dropout(batch, 0.5), batch_idx)

        def val_dataloader(self):
            return DataLoader(torch.randn(8, 32, generator=torch.Generator().manual_seed(1)), batch_size=2)

    weights = []
    for sanity_steps in (0, 2):
        torch.manual_seed(0)
        model = Noisy()
        fulmen.Trainer(max_epochs=2, limit_train_batches=4, limit_val_batches=2, num_sanity_val_steps=sanity_steps,
                       logger=False, enable_progress_bar=False, enable_model_summary=False,
                       enable_checkpointing=False).fit(model)
        weights.append(model.layer.weight.detach().clone())
    assert torch.equal(weights[0], weights[1])


def test_estimated_stepping_batches_inside_configure_optimizers():
    got = []

    class Est(BoringModel):
        def configure_optimizers(self):
            got.append(self.trainer.estimated_stepping_batches)
            return super().configure_optimizers()

    make_trainer(max_epochs=3, limit_train_batches=5, accumulate_grad_batches=2, limit_val_batches=0).fit(Est())
    assert got == [9]


@pytest.mark.parametrize("mode, expected", [("max_size_cycle", 5), ("min_size", 3), ("max_size", 5)])
def test_several_train_loaders(mode, expected):
    shapes = []

    class Multi(BoringModel):
        def training_step(self, batch, batch_idx):
            shapes.append(sorted(batch))
            loss = sum(self.step(b) for b in batch.values() if b is not None)
            return loss

    loaders = {"a": DataLoader(RandomDataset(32, 3)), "b": DataLoader(RandomDataset(32, 5))}
    trainer = make_trainer(max_epochs=1, limit_val_batches=0)
    trainer.fit(Multi(), CombinedLoader(loaders, mode))
    assert len(shapes) == expected and shapes[0] == ["a", "b"]


def test_combined_loader_sequential():
    loader = CombinedLoader([range(2), range(3)], "sequential")
    assert list(loader) == [(0, 0, 0), (1, 1, 0), (0, 0, 1), (1, 1, 1), (2, 2, 1)]
    assert len(loader) == 5


def test_predict_several_loaders_and_return_predictions_false():
    loaders = [DataLoader(RandomDataset(32, 4), batch_size=2), DataLoader(RandomDataset(32, 6), batch_size=2)]

    class Pred(BoringModel):
        def predict_step(self, batch, batch_idx, dataloader_idx=0):
            return self(batch)

    trainer = make_trainer()
    preds = trainer.predict(Pred(), loaders)
    assert [len(p) for p in preds] == [2, 3]
    assert trainer.predict(Pred(), loaders, return_predictions=False) is None


def test_datamodule_and_validate_results():
    class Val(BoringModel):
        def validation_step(self, batch, batch_idx):
            self.log("val_loss", self.step(batch))

    dm = BoringDataModule()
    trainer = make_trainer(max_epochs=1, limit_train_batches=2)
    model = Val()
    trainer.fit(model, datamodule=dm)
    results = trainer.validate(model, datamodule=dm, verbose=False)
    assert list(results[0]) == ["val_loss"] and isinstance(results[0]["val_loss"], float)


@pytest.mark.parametrize("conf", [
    lambda opt, sch: opt,
    lambda opt, sch: [opt],
    lambda opt, sch: ([opt], [sch]),
    lambda opt, sch: ([opt], [{"scheduler": sch, "interval": "step"}]),
    lambda opt, sch: {"optimizer": opt, "lr_scheduler": sch},
    lambda opt, sch: {"optimizer": opt, "lr_scheduler": {"scheduler": sch, "interval": "step", "frequency": 2}},
    lambda opt, sch: [{"optimizer": opt, "lr_scheduler": sch}],
])
def test_configure_optimizers_formats(conf):
    class Conf(BoringModel):
        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=1.0)
            return conf(opt, torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5))

    trainer = make_trainer(max_epochs=2, limit_train_batches=4, limit_val_batches=0)
    trainer.fit(Conf())
    lr = trainer.optimizers[0].param_groups[0]["lr"]
    configs = trainer.lr_scheduler_configs
    if not configs:
        assert lr == 1.0
    elif configs[0].interval == "epoch":
        assert lr == 0.25
    else:
        assert lr == 0.5 ** (8 // configs[0].frequency)


def test_reduce_on_plateau_reads_the_monitored_metric():
    class Plateau(BoringModel):
        def validation_step(self, batch, batch_idx):
            self.log("val_loss", torch.tensor(1.0))

        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=1.0)
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5)
            return {"optimizer": opt, "lr_scheduler": sched, "monitor": "val_loss"}

    trainer = make_trainer(max_epochs=3, limit_train_batches=2, limit_val_batches=1)
    trainer.fit(Plateau())
    # epoch 0 sets the best; epochs 1 and 2 are no better and patience is 0: two halvings
    assert trainer.optimizers[0].param_groups[0]["lr"] == 0.25


def test_torchmetrics_metric_logging():
    torchmetrics = pytest.importorskip("torchmetrics")

    class WithMetric(BoringModel):
        def __init__(self):
            super().__init__()
            self.mean = torchmetrics.MeanMetric()

        def validation_step(self, batch, batch_idx):
            self.mean(torch.tensor(float(batch_idx)))
            self.log("mean_idx", self.mean)

    trainer = make_trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=4, num_sanity_val_steps=0)
    trainer.fit(WithMetric())
    assert trainer.callback_metrics["mean_idx"].item() == 1.5


def test_save_hyperparameters_nested_decorated_and_mixins():
    import functools

    def decorate(init):
        @functools.wraps(init)
        def wrapper(*args, **kwargs):
            return init(*args, **kwargs)
        return wrapper

    class Mixin:
        def helper(self):
            return 1

    class Parent(fulmen.LightningModule):
        def __init__(self, lr=0.1, **kwargs):
            super().__init__()
            self.save_hyperparameters()

    class Child(Mixin, Parent):
        @decorate
        def __init__(self, hidden=8, model=None, *args, **kwargs):
            super().__init__(lr=0.5, **kwargs)

    child = Child(hidden=16, extra="x")
    assert dict(child.hparams) == {"lr": 0.5, "hidden": 16, "model": None, "extra": "x"}
    assert child.hparams.hidden == 16
    child.hparams.hidden = 32
    assert child.hparams_initial["hidden"] == 16

    class Picky(fulmen.LightningModule):
        def __init__(self, a=1, b=2, net=None):
            super().__init__()
            self.save_hyperparameters("a", ignore="net")

    assert dict(Picky(a=5).hparams) == {"a": 5}


def test_seed_everything_is_reproducible_and_sets_worker_flag(monkeypatch):
    seed = fulmen.seed_everything(7, workers=True, verbose=False)
    a = torch.rand(3)
    fulmen.seed_everything(7, verbose=False)
    assert seed == 7 and torch.equal(a, torch.rand(3))
    fulmen.seed_everything(1, workers=True, verbose=False)
    loader = DataLoader(RandomDataset(32, 4), num_workers=1)
    make_trainer(max_steps=1, limit_val_batches=0).fit(BoringModel(), loader)
    assert loader.worker_init_fn is not None


def test_manual_optimization_with_two_optimizers_and_toggle():
    class GAN(BoringModel):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False
            self.other = torch.nn.Linear(32, 2)

        def training_step(self, batch, batch_idx):
            opt_a, opt_b = self.optimizers()
            with self.toggled_optimizer(opt_a):
                assert not self.other.weight.requires_grad
                loss = self.step(batch) + self.other(batch).sum() * 0
                opt_a.zero_grad()
                self.manual_backward(loss)
                self.clip_gradients(opt_a, gradient_clip_val=0.1)
                opt_a.step()
            assert self.other.weight.requires_grad
            opt_b.zero_grad()
            self.manual_backward(self.other(batch).pow(2).mean())
            opt_b.step()

        def configure_optimizers(self):
            return [torch.optim.SGD(self.layer.parameters(), lr=0.1), torch.optim.SGD(self.other.parameters(), lr=0.1)]

    trainer = make_trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=0)
    trainer.fit(GAN())
    assert trainer.global_step == 6  # every optimizer step counts


def test_keyboard_interrupt_is_graceful():
    seen = []

    class Interrupt(fulmen.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            raise KeyboardInterrupt

        def on_exception(self, trainer, pl_module, exception):
            seen.append(type(exception).__name__)

    trainer = make_trainer(max_epochs=1, callbacks=[Interrupt()])
    with pytest.raises(SystemExit):
        trainer.fit(BoringModel())
    assert seen == ["KeyboardInterrupt"] and trainer.interrupted


def test_reload_dataloaders_every_n_epochs():
    calls = []

    class Reload(BoringModel):
        def train_dataloader(self):
            calls.append(self.current_epoch)
            return super().train_dataloader()

    make_trainer(max_epochs=4, limit_train_batches=1, limit_val_batches=0,
                 reload_dataloaders_every_n_epochs=2).fit(Reload())
    assert calls == [0, 2]


def test_env_var_defaults(monkeypatch):
    monkeypatch.setenv("PL_TRAINER_MAX_EPOCHS", "3")
    assert fulmen.Trainer().max_epochs == 3
    assert fulmen.Trainer(max_epochs=1).max_epochs == 1


def test_import_does_not_load_optional_packages():
    import subprocess
    import sys

    # Compared with what `import torch` alone loads (torch itself imports tqdm, through torch.hub).
    code = ("import sys, torch; before = set(sys.modules); import fulmen; bad = [m for m in ('tensorboard', 'wandb', "
            "'mlflow', 'rich', 'tqdm', 'jsonargparse', 'deepspeed', 'torchmetrics', 'sklearn', 'pytorch_lightning') "
            "if m in sys.modules and m not in before]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_time_based_val_check_interval():
    runs = []

    class Slow(BoringModel):
        def training_step(self, batch, batch_idx):
            time.sleep(0.01)
            return super().training_step(batch, batch_idx)

        def on_validation_start(self):
            if not self.trainer.sanity_checking:
                runs.append(self.trainer.state.batch_idx)

    trainer = make_trainer(max_epochs=1, limit_train_batches=40, limit_val_batches=1,
                           val_check_interval={"seconds": 0.15}, num_sanity_val_steps=0)
    trainer.fit(Slow())
    # At least 0.4 s of batches: two validations or more; fewer than one per batch even on a busy machine.
    assert 2 <= len(runs) < 40


def test_inference_mode_switch_and_no_grad_in_fit_validation():
    modes = []

    class Check(BoringModel):
        def validation_step(self, batch, batch_idx):
            modes.append((self.trainer.state.fn, torch.is_inference_mode_enabled(), torch.is_grad_enabled()))

    model = Check()
    make_trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=1, num_sanity_val_steps=0).fit(model)
    make_trainer(limit_val_batches=1).validate(model, verbose=False)
    make_trainer(limit_val_batches=1, inference_mode=False).validate(model, verbose=False)
    assert modes == [("fit", False, False), ("validate", True, False), ("validate", False, False)]


def test_detect_anomaly_finds_nan_in_backward():
    class NaN(BoringModel):
        def training_step(self, batch, batch_idx):
            return {"loss": torch.sqrt(self(batch).sum() * 0 - 1)}

    with pytest.raises(RuntimeError, match="returned nan"):
        make_trainer(max_steps=1, limit_val_batches=0, detect_anomaly=True).fit(NaN())


def test_deterministic_sets_torch_flag():
    try:
        make_trainer(deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        make_trainer(deterministic="warn")
        assert torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(False)


def test_steps_without_batch_idx_and_with_varargs():
    seen = []

    class OneArg(BoringModel):
        def training_step(self, batch):
            seen.append("train")
            return self.step(batch)

        def validation_step(self, batch):
            seen.append("val")

        def test_step(self, *args):
            seen.append(("test", len(args)))

    trainer = make_trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=1, limit_test_batches=1,
                           num_sanity_val_steps=0)
    model = OneArg()
    trainer.fit(model)
    trainer.test(model, verbose=False)
    assert seen == ["train", "val", ("test", 2)]

"""The Tuner and its callbacks on fulmen alone: a run that tunes and goes on equals a fresh run with the tuned value,
the search works for every Trainer method and wherever the attribute lives, and misuse is refused with the fix.
(tests/parity/test_tuner.py compares the sweeps and searches with Lightning's.)"""

from __future__ import annotations

import csv

import pytest
import torch

import fulmen
from fulmen.callbacks import BatchSizeFinder, LearningRateFinder
from fulmen.demos.boring_classes import BoringModel
from fulmen.tuner import Tuner
from fulmen.tuner.lr_finder import LRFinder
from fulmen.utilities.exceptions import MisconfigurationException
from tests.models import tunable_model


def trainer(**kwargs):
    settings = dict(logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                    max_epochs=2)
    return fulmen.Trainer(**{**settings, **kwargs})


def weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class Dropped(tunable_model(BoringModel, limit=24)):
    """Dropout in the step, so the random state after tuning matters to the result."""

    def step(self, batch):
        return torch.nn.functional.mse_loss(torch.nn.functional.dropout(self.layer(batch[0]), 0.2), batch[1])


# ---------------------------------------------------------------------------------------------- the callbacks
def test_lr_finder_callback_goes_on_as_a_fresh_run_at_the_suggestion():
    torch.manual_seed(7)
    tuned = Dropped()
    finder = LearningRateFinder(min_lr=1e-4, max_lr=1.0, num_training_steps=30)
    t = trainer(callbacks=[finder], limit_train_batches=20)
    t.fit(tuned)
    lr = finder.optimal_lr.suggestion()
    assert lr is not None and tuned.lr == lr and t.optimizers[0].param_groups[0]["lr"] == lr
    assert t.global_step == 40  # the 30 sweep steps are not counted

    torch.manual_seed(7)
    fresh = Dropped(lr=lr)
    trainer(limit_train_batches=20).fit(fresh)
    assert same(weights(tuned), weights(fresh))


def test_batch_size_finder_callback_goes_on_as_a_fresh_run_with_the_size_found():
    torch.manual_seed(3)
    tuned = Dropped()
    finder = BatchSizeFinder(mode="binsearch", margin=0.0)
    t = trainer(callbacks=[finder], limit_train_batches=5)
    t.fit(tuned)
    assert finder.optimal_batch_size == tuned.batch_size == 24
    assert t.global_step == 10 and t.train_dataloader.batch_size == 24

    torch.manual_seed(3)
    fresh = Dropped(batch_size=24)
    trainer(limit_train_batches=5).fit(fresh)
    assert same(weights(tuned), weights(fresh))


def test_the_finders_run_before_the_other_callbacks():
    class Seen(fulmen.Callback):
        def on_fit_start(self, trainer, pl_module):
            self.size = pl_module.batch_size

    seen = Seen()
    trainer(callbacks=[seen, BatchSizeFinder()], max_epochs=1).fit(tunable_model(BoringModel, limit=10)())
    assert seen.size == 8


# ---------------------------------------------------------------------------------------------- lr_find
def test_lr_find_leaves_the_model_and_trainer_as_they_were(tmp_path):
    model = tunable_model(BoringModel)()
    before = weights(model)
    t = fulmen.Trainer(logger=fulmen.loggers.CSVLogger(tmp_path), max_epochs=1, enable_progress_bar=False,
                       enable_model_summary=False, callbacks=[fulmen.callbacks.EarlyStopping("val_loss")])
    callbacks = list(t.callbacks)
    finder = Tuner(t).lr_find(model, num_training=25)
    assert isinstance(finder, LRFinder) and len(finder.results["lr"]) == 25
    assert model.lr == finder.suggestion() and same(before, weights(model))
    assert t.callbacks == callbacks and t.global_step == 0

    t.fit(model)  # the Trainer can fit afterwards, and the tuning left no rows in the logs
    assert t.global_step == 128
    with open(tmp_path / "lightning_logs" / "version_0" / "metrics.csv") as f:
        steps = [int(row["step"]) for row in csv.DictReader(f)]
    assert steps and max(steps) == 127


def test_lr_find_updates_an_hparam_or_a_named_attribute():
    class Hparams(tunable_model(BoringModel)):
        def __init__(self, learning_rate=0.01):
            super().__init__()
            del self.lr
            self.save_hyperparameters()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.hparams.learning_rate)

    model = Hparams()
    finder = Tuner(trainer()).lr_find(model, num_training=20)
    assert model.hparams.learning_rate == finder.suggestion() != 0.01

    model = tunable_model(BoringModel)()
    model.my_rate = 0.5
    finder = Tuner(trainer()).lr_find(model, num_training=20, attr_name="my_rate")
    assert model.my_rate == finder.suggestion() and model.lr == 0.01

    model = tunable_model(BoringModel)()
    Tuner(trainer()).lr_find(model, num_training=20, update_attr=False)
    assert model.lr == 0.01


def test_lr_find_stops_when_the_loss_diverges():
    finder = Tuner(trainer()).lr_find(tunable_model(BoringModel)(), min_lr=1e-3, max_lr=1e4, num_training=100)
    losses = finder.results["loss"]
    assert 10 < len(losses) < 100
    assert losses[-1] > 4 * min(losses)


def test_lr_find_plot_writes_a_png(tmp_path):
    finder = Tuner(trainer()).lr_find(tunable_model(BoringModel)(), num_training=30)
    figure = finder.plot(suggest=True, path=tmp_path / "lr.png")
    assert (tmp_path / "lr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ax = figure.axes[0]
    assert ax.get_xscale() == "log" and len(ax.lines) == 2  # the curve and the suggestion


def test_suggestion_needs_enough_points(caplog):
    finder = LRFinder("exponential", 1e-5, 1.0, 100)
    finder.results = {"lr": [1e-5, 1e-4, 1e-3], "loss": [1.0, 0.5, 0.4]}
    assert finder.suggestion() is None
    assert "too few points" in caplog.text
    assert finder.suggestion(skip_begin=0, skip_end=0) == 1e-5  # the steepest fall is the first
    finder.results["loss"][1:] = [float("nan"), float("inf")]  # non-finite points are left out
    assert finder.suggestion(skip_begin=0, skip_end=0) is None


def test_lr_find_refuses_misuse():
    with pytest.raises(MisconfigurationException, match="method='fit' only"):
        Tuner(trainer()).lr_find(tunable_model(BoringModel)(), method="validate")
    with pytest.raises(MisconfigurationException, match="not dataloaders="):
        Tuner(trainer()).lr_find(tunable_model(BoringModel)(), dataloaders=[])
    with pytest.raises(ValueError, match="already has a LearningRateFinder"):
        Tuner(trainer(callbacks=[LearningRateFinder()])).lr_find(tunable_model(BoringModel)())
    with pytest.raises(ValueError, match="mode='cosine'"):
        LearningRateFinder(mode="cosine")
    with pytest.raises(ValueError, match="0 < min_lr < max_lr"):
        LearningRateFinder(min_lr=1.0, max_lr=0.1)

    class NoRate(tunable_model(BoringModel)):
        def __init__(self):
            super().__init__()
            del self.lr

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    with pytest.raises(MisconfigurationException, match="lr.*learning_rate"):
        Tuner(trainer()).lr_find(NoRate())

    class Two(tunable_model(BoringModel)):
        def configure_optimizers(self):
            return [torch.optim.SGD(self.parameters(), lr=self.lr), torch.optim.SGD(self.parameters(), lr=self.lr)]

        automatic_optimization = False

        def training_step(self, batch, batch_idx):
            return None

    with pytest.raises(MisconfigurationException, match="one optimizer.*returned 2"):
        Tuner(trainer()).lr_find(Two())


def test_lr_find_is_skipped_under_fast_dev_run():
    model = tunable_model(BoringModel)()
    with pytest.warns(UserWarning, match="fast_dev_run"):
        assert Tuner(trainer(fast_dev_run=True)).lr_find(model) is None
    assert model.lr == 0.01


# ---------------------------------------------------------------------------------------------- scale_batch_size
@pytest.mark.parametrize("mode, found", [("power", 32), ("binsearch", 47)])
def test_scale_batch_size_finds_the_largest_size_that_fits(mode, found):
    model = tunable_model(BoringModel, limit=50)()
    before = weights(model)
    t = trainer()
    assert Tuner(t).scale_batch_size(model, mode=mode) == found == model.batch_size
    assert same(before, weights(model)) and t.global_step == 0
    t.fit(model)
    assert t.train_dataloader.batch_size == found


@pytest.mark.parametrize("method", ["validate", "test", "predict"])
def test_scale_batch_size_for_each_evaluation_method(method):
    model = tunable_model(BoringModel, eval_limit=100)()
    assert Tuner(trainer()).scale_batch_size(model, method=method, mode="binsearch", margin=0.0) == 100


def test_scale_batch_size_stops_at_max_val_and_at_the_dataset_length():
    assert Tuner(trainer()).scale_batch_size(tunable_model(BoringModel)(), max_val=40) == 40
    assert Tuner(trainer()).scale_batch_size(tunable_model(BoringModel)()) == 512  # the dataset's length
    assert Tuner(trainer()).scale_batch_size(tunable_model(BoringModel, limit=1000)(), max_trials=3) == 8


def test_scale_batch_size_halves_when_the_first_size_does_not_fit():
    model = tunable_model(BoringModel, limit=5)()
    assert Tuner(trainer()).scale_batch_size(model, init_val=64) == 4
    with pytest.raises(MisconfigurationException, match="no batch_size that fits"):
        Tuner(trainer()).scale_batch_size(tunable_model(BoringModel, limit=0)())


def test_scale_batch_size_sets_an_hparam_or_the_datamodule():
    class Hparams(tunable_model(BoringModel, limit=20)):
        def __init__(self, batch_size=2):
            super().__init__()
            del self.batch_size
            self.save_hyperparameters()

        def _loader(self, shuffle=False):
            return torch.utils.data.DataLoader(self.data, batch_size=self.hparams.batch_size, shuffle=shuffle)

    model = Hparams()
    assert Tuner(trainer()).scale_batch_size(model) == model.hparams.batch_size == 16

    class Data(fulmen.LightningDataModule):
        def __init__(self):
            super().__init__()
            self.batch_size = 2

        def train_dataloader(self):
            return torch.utils.data.DataLoader(tunable_model(BoringModel)().data, batch_size=self.batch_size)

    class NoSize(tunable_model(BoringModel, limit=20)):
        def __init__(self):
            super().__init__()
            del self.batch_size

    data = Data()
    assert Tuner(trainer()).scale_batch_size(NoSize(), datamodule=data) == data.batch_size == 16


def test_scale_batch_size_refuses_misuse():
    model = tunable_model(BoringModel)()
    loader = model.train_dataloader()
    with pytest.raises(MisconfigurationException, match="cannot tune loaders passed"):
        Tuner(trainer()).scale_batch_size(model, train_dataloaders=loader)
    with pytest.raises(MisconfigurationException, match="cannot tune loaders passed"):
        Tuner(trainer()).scale_batch_size(model, method="test", dataloaders=loader)
    with pytest.raises(MisconfigurationException, match="batch_arg_name='size'.*no such attribute"):
        Tuner(trainer()).scale_batch_size(model, batch_arg_name="size")
    with pytest.raises(MisconfigurationException, match="takes dataloaders="):
        Tuner(trainer()).scale_batch_size(model, method="test", train_dataloaders=loader)
    with pytest.raises(ValueError, match="method='train'"):
        Tuner(trainer()).scale_batch_size(model, method="train")
    with pytest.raises(ValueError, match="already has a BatchSizeFinder"):
        Tuner(trainer(callbacks=[BatchSizeFinder()])).scale_batch_size(model)
    with pytest.raises(ValueError, match="mode='double'"):
        BatchSizeFinder(mode="double")
    with pytest.raises(ValueError, match="margin=1.5"):
        BatchSizeFinder(margin=1.5)
    with pytest.raises(ValueError, match="init_val=0"):
        BatchSizeFinder(init_val=0)

    class Several(tunable_model(BoringModel)):
        def val_dataloader(self):
            return [self._loader(), self._loader()]

        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            return super().validation_step(batch, batch_idx)

    with pytest.raises(MisconfigurationException, match="several"):
        Tuner(trainer()).scale_batch_size(Several(), method="validate")


def test_an_error_that_is_not_out_of_memory_propagates():
    class Broken(tunable_model(BoringModel)):
        def training_step(self, batch, batch_idx):
            if batch[0].shape[0] > 8:
                raise RuntimeError("shape mismatch in my layer")
            return super().training_step(batch, batch_idx)

    with pytest.raises(RuntimeError, match="shape mismatch"):
        Tuner(trainer()).scale_batch_size(Broken())


def test_scale_batch_size_is_skipped_under_fast_dev_run():
    model = tunable_model(BoringModel, limit=10)()
    with pytest.warns(UserWarning, match="fast_dev_run"):
        assert Tuner(trainer(fast_dev_run=True)).scale_batch_size(model) is None
    assert model.batch_size == 4

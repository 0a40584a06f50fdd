"""Behaviour that Lightning programs rely on, the same on both frameworks: the metrics kept after validation and
test, how num_sanity_val_steps=-1 reads, LearningRateMonitor's last values, logger-like objects, the default
logger's files when nothing is logged, and the CLI reading an int limit when lightning_fabric is imported."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
import torch

from tests.parity.recorder import load

pytest.importorskip("pytorch_lightning")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _quiet(pl, **kwargs):
    return pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, **kwargs)


def _kept_metrics(framework):
    pl, demos = load(framework)

    class Logs(demos.BoringModel):
        def training_step(self, batch, batch_idx):
            out = super().training_step(batch, batch_idx)
            self.log("a", out["loss"], on_step=True, on_epoch=True)
            return out

        def validation_step(self, batch, batch_idx):
            loss = self.step(batch)
            self.log("v", loss + batch_idx, on_step=True, on_epoch=True)
            self.log("w", loss)

        def test_step(self, batch, batch_idx):
            self.log("t", self.step(batch) * batch_idx, on_step=True, on_epoch=True)

    pl.seed_everything(0, verbose=False)
    model = Logs()
    trainer = _quiet(pl, max_epochs=1, limit_train_batches=3, limit_val_batches=3, limit_test_batches=2)
    seen = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model)
        seen["fit"] = dict(trainer.logged_metrics), dict(trainer.callback_metrics)
        trainer.validate(model, verbose=False)
        seen["validate"] = dict(trainer.logged_metrics), dict(trainer.callback_metrics)
        trainer.test(model, verbose=False)
        seen["test"] = dict(trainer.logged_metrics), dict(trainer.callback_metrics)
    return {stage: tuple({k: float(v) for k, v in view.items()} for view in views) for stage, views in seen.items()}


def test_metrics_kept_after_validation_and_test():
    ours, theirs = _kept_metrics("fulmen"), _kept_metrics("lightning")
    for stage in ("fit", "validate", "test"):
        for our_view, their_view in zip(ours[stage], theirs[stage]):
            assert sorted(our_view) == sorted(their_view), stage
            for key in our_view:
                assert our_view[key] == pytest.approx(their_view[key], rel=1e-5), (stage, key)
    assert "v_step" in ours["validate"][0] and "t_step" in ours["test"][0]  # the last step value is kept


@pytest.mark.parametrize("value", [-1, 0, 3, None])
def test_num_sanity_val_steps_reads_as_in_lightning(value):
    def read(framework):
        pl, _ = load(framework)
        return _quiet(pl, num_sanity_val_steps=value).num_sanity_val_steps

    assert read("fulmen") == read("lightning")


def _momentum(framework, log_momentum):
    pl, demos = load(framework)
    from importlib import import_module

    monitor_cls = import_module("fulmen.callbacks" if framework == "fulmen" else "pytorch_lightning.callbacks")
    monitor = monitor_cls.LearningRateMonitor(log_momentum=log_momentum, log_weight_decay=log_momentum)

    class WithMomentum(demos.BoringModel):
        def configure_optimizers(self):
            sgd = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
            return [sgd], [torch.optim.lr_scheduler.StepLR(sgd, 1)]

    logger = import_module("fulmen.loggers" if framework == "fulmen" else "pytorch_lightning.loggers")
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=0, callbacks=[monitor],
                         logger=logger.CSVLogger(f"{framework}-logs"), enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(WithMomentum())
    return monitor.last_momentum_values, monitor.last_weight_decay_values, monitor.lrs


@pytest.mark.parametrize("log_momentum", [False, True])
def test_learning_rate_monitor_keeps_the_last_values(log_momentum):
    assert _momentum("fulmen", log_momentum) == _momentum("lightning", log_momentum)


class _Recorder:
    """A logger-like object that is no framework's Logger subclass."""

    def __init__(self):
        self.calls = []
        self.name, self.version, self.save_dir, self.log_dir = "rec", "0", None, None

    def log_metrics(self, metrics, step=None):
        self.calls.append((step, {k: round(float(v), 6) for k, v in metrics.items()}))

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def log_graph(self, model, input_array=None):
        pass

    def save(self):
        pass

    def finalize(self, status):
        self.calls.append(("finalize", status))

    def after_save_checkpoint(self, checkpoint_callback):
        pass


def test_a_logger_like_object_is_taken():
    def run(framework):
        pl, demos = load(framework)

        class Logs(demos.BoringModel):
            def training_step(self, batch, batch_idx):
                out = super().training_step(batch, batch_idx)
                self.log("loss", out["loss"])
                return out

        pl.seed_everything(0, verbose=False)
        recorder = _Recorder()
        trainer = pl.Trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=0, log_every_n_steps=1,
                             logger=recorder, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.fit(Logs())
        return recorder.calls, trainer.logger is recorder

    assert run("fulmen") == run("lightning")


def test_default_logger_writes_its_files_with_nothing_logged(tmp_path):
    pytest.importorskip("tensorboard")

    def files(framework):
        pl, demos = load(framework)
        root = tmp_path / framework

        class Silent(demos.BoringModel):
            pass  # logs nothing, saves no hyperparameters

        trainer = pl.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=0, default_root_dir=root,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.fit(Silent())
        found = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
        return [f.split("events.out.tfevents")[0] + "events" if "tfevents" in f else f for f in found]

    ours = files("fulmen")
    assert ours == files("lightning")
    assert "lightning_logs/version_0/events" in ours


CLI_SCRIPT = """
import sys
sys.path.insert(0, {root!r})
import lightning_fabric.utilities  # a project that imports Fabric's utilities first
if sys.argv[1] == "fulmen":
    from fulmen.cli import LightningCLI
    from fulmen.demos.boring_classes import BoringModel
else:
    from pytorch_lightning.cli import LightningCLI
    from pytorch_lightning.demos.boring_classes import BoringModel
cli = LightningCLI(BoringModel, run=False, args=["--trainer.limit_train_batches=10", "--trainer.limit_val_batches=0.5",
                                                  "--trainer.logger=false"])
print(repr(cli.trainer.limit_train_batches), repr(cli.trainer.limit_val_batches))
"""


def test_cli_reads_an_int_limit_with_fabric_imported(tmp_path):
    pytest.importorskip("jsonargparse")
    script = tmp_path / "cli.py"
    script.write_text(CLI_SCRIPT.format(root=ROOT))
    out = {}
    for framework in ("fulmen", "lightning"):
        proc = subprocess.run([sys.executable, str(script), framework], capture_output=True, text=True,
                              timeout=300, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        out[framework] = proc.stdout.strip().splitlines()[-1]
    assert out["fulmen"] == out["lightning"] == "10 0.5"


def _skip_warnings(framework, case):
    pl, demos = load(framework)
    from torch.utils.data import DataLoader

    class NoValStep(demos.BoringModel):
        validation_step = None  # as Lightning's own tests switch a hook off

    class NoValData(demos.BoringModel):
        val_dataloader = None

    model = {"data without a step": NoValStep, "a step without data": NoValData}[case]()
    trainer = _quiet(pl, max_steps=2, limit_val_batches=2)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        trainer.fit(model, val_dataloaders=DataLoader(demos.RandomDataset(32, 8)) if case != "a step without data"
                    else None)
    found = sorted((type(w.message).__name__, str(w.message)) for w in record if "Skipping val loop" in str(w.message))
    return found, trainer.num_val_batches


@pytest.mark.parametrize("case", ["data without a step", "a step without data"])
def test_skipping_the_val_loop_warns_as_in_lightning(case):
    ours, theirs = _skip_warnings("fulmen", case), _skip_warnings("lightning", case)
    assert ours == theirs and len(ours[0]) == 1, (ours, theirs)

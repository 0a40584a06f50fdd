"""Checkpoints: safe and atomic files, the layout, load_from_checkpoint, ckpt_path, and exact resume after SIGKILL."""

from __future__ import annotations

import argparse
import dataclasses
import enum
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
import torch

import fulmen as L
from fulmen.callbacks import Callback, ModelCheckpoint, OnExceptionCheckpoint
from fulmen.checkpoint import io
from fulmen.demos.boring_classes import BoringModel
from fulmen.utilities.exceptions import MisconfigurationException

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "tests" / "resume_scenario.py"
sys.path.insert(0, str(SCENARIO.parent))
from resume_scenario import epoch_losses  # noqa: E402


def _trainer(**kwargs):
    defaults = dict(max_epochs=2, limit_train_batches=4, limit_val_batches=2, enable_progress_bar=False,
                    enable_model_summary=False, logger=False, num_sanity_val_steps=0)
    defaults.update(kwargs)
    return L.Trainer(**defaults)


class Logged(BoringModel):
    def __init__(self, lr: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters()

    def validation_step(self, batch, batch_idx):
        out = super().validation_step(batch, batch_idx)
        self.log("val_loss", out["x"])
        return out

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=self.hparams.lr)
        return [opt], [torch.optim.lr_scheduler.StepLR(opt, 1, 0.5)]


# ---------------------------------------------------------------------------------------------- files
def test_atomic_save_leaves_only_the_final_file(tmp_path):
    path = tmp_path / "sub" / "a.ckpt"
    io.atomic_save({"x": torch.ones(3)}, path)
    io.atomic_save({"x": torch.zeros(3)}, path)
    assert os.listdir(tmp_path / "sub") == ["a.ckpt"]
    assert torch.equal(torch.load(path, weights_only=True)["x"], torch.zeros(3))


def test_memory_url_round_trip():
    io.atomic_save({"x": torch.arange(4)}, "memory://fulmen-test/c.ckpt")
    assert torch.equal(io.load("memory://fulmen-test/c.ckpt")["x"], torch.arange(4))
    assert io.listdir("memory://fulmen-test") == ["memory://fulmen-test/c.ckpt"]


def test_bad_files_get_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        io.load(tmp_path / "nope.ckpt")
    with pytest.raises(FileNotFoundError, match="is a folder"):
        io.load(tmp_path)
    (tmp_path / "text.ckpt").write_text("hello")
    with pytest.raises(ValueError, match="text.ckpt.*not a valid checkpoint"):
        io.load(tmp_path / "text.ckpt")
    io.atomic_save({"w": torch.randn(1000)}, tmp_path / "good.ckpt")
    data = (tmp_path / "good.ckpt").read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.ckpt.*not a valid checkpoint"):
        io.load(tmp_path / "cut.ckpt")


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Opt:
    depth: int = 2
    where: pathlib.Path = pathlib.Path("/data")


class WithObjects(BoringModel):
    def __init__(self, ns=None, path=None, color=None, opt=None) -> None:
        super().__init__()
        self.save_hyperparameters()


def test_hyperparameters_are_stored_as_plain_data():
    model = WithObjects(argparse.Namespace(a=1, b="x"), pathlib.Path("/tmp/data"), Color.RED, Opt())
    trainer = _trainer(max_epochs=1, limit_val_batches=0)
    trainer.fit(model)
    trainer.save_checkpoint("plain.ckpt")
    checkpoint = torch.load("plain.ckpt", weights_only=True)  # would fail on any pickled object
    assert checkpoint["hyper_parameters"] == {"ns": {"a": 1, "b": "x"}, "path": "/tmp/data", "color": "red",
                                              "opt": {"depth": 2, "where": "/data"}}
    rebuilt = WithObjects.load_from_checkpoint("plain.ckpt")
    assert rebuilt.hparams.path == "/tmp/data"
    assert torch.equal(rebuilt.layer.weight, model.layer.weight)


def test_layout_matches_lightning_keys():
    trainer = _trainer(max_epochs=1)
    trainer.fit(Logged())
    trainer.save_checkpoint("full.ckpt")
    trainer.save_checkpoint("weights.ckpt", weights_only=True)
    full = torch.load("full.ckpt", weights_only=True)
    assert list(full)[:5] == ["epoch", "global_step", "pytorch-lightning_version", "state_dict", "loops"]
    for key in ("callbacks", "optimizer_states", "lr_schedulers", "hparams_name", "hyper_parameters", "fulmen"):
        assert key in full
    assert set(full["loops"]) == {"fit_loop", "validate_loop", "test_loop", "predict_loop"}
    weights = torch.load("weights.ckpt", weights_only=True)
    assert "optimizer_states" not in weights and "fulmen" not in weights
    with pytest.raises(KeyError, match="holds only the weights"):
        _trainer(max_epochs=2).fit(Logged(), ckpt_path="weights.ckpt")


def test_load_from_checkpoint_overrides_and_strictness():
    trainer = _trainer(max_epochs=1)
    trainer.fit(Logged(lr=0.05))
    trainer.save_checkpoint("m.ckpt")
    assert Logged.load_from_checkpoint("m.ckpt").hparams.lr == 0.05
    assert Logged.load_from_checkpoint("m.ckpt", lr=0.3).hparams.lr == 0.3
    with pytest.raises(TypeError, match="class method that returns a new object"):
        Logged().load_from_checkpoint("m.ckpt")

    class Bigger(Logged):
        def __init__(self, lr: float = 0.1) -> None:
            super().__init__(lr)
            self.extra = torch.nn.Linear(2, 2)

    with pytest.raises(RuntimeError, match=r"missing keys \['extra.weight', 'extra.bias'\]"):
        Bigger.load_from_checkpoint("m.ckpt")
    assert torch.equal(Bigger.load_from_checkpoint("m.ckpt", strict=False).layer.weight,
                       trainer.lightning_module.layer.weight)


# ---------------------------------------------------------------------------------------------- ModelCheckpoint
def test_default_checkpoint_goes_to_the_logger_version_folder():
    trainer = L.Trainer(max_epochs=2, limit_train_batches=3, limit_val_batches=1, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(Logged())
    folder = pathlib.Path("lightning_logs/version_0/checkpoints")
    assert sorted(os.listdir(folder)) == ["epoch=1-step=6.ckpt"]
    assert trainer.checkpoint_callback.best_model_path == str(folder.resolve() / "epoch=1-step=6.ckpt") or \
        trainer.checkpoint_callback.best_model_path.endswith("epoch=1-step=6.ckpt")


def test_top_k_by_monitor_and_last(tmp_path):
    mc = ModelCheckpoint(dirpath="ck", monitor="val_loss", mode="max", save_top_k=2, save_last=True,
                         filename="{epoch}-{val_loss:.3f}")
    trainer = _trainer(max_epochs=4, callbacks=[mc])
    trainer.fit(Logged())
    kept = sorted(p for p in os.listdir("ck") if p != "last.ckpt")
    assert len(kept) == 2 and all(p.startswith("epoch=") and "val_loss=" in p for p in kept)
    scores = sorted(float(v) for v in mc.best_k_models.values())
    assert float(mc.best_model_score) == scores[-1]
    assert os.path.basename(mc.best_model_path) in kept
    assert mc.last_model_path.endswith("last.ckpt")
    mc.to_yaml()
    assert (pathlib.Path("ck") / "best_k_models.yaml").read_text().count(".ckpt") == 2


def test_save_last_link_and_version_counter():
    mc = ModelCheckpoint(dirpath="ck", save_last="link", filename="same")
    trainer = _trainer(max_epochs=2, callbacks=[mc])
    trainer.fit(Logged())
    assert os.path.islink("ck/last.ckpt") and os.readlink("ck/last.ckpt") == "same.ckpt"
    mc2 = ModelCheckpoint(dirpath="ck", save_top_k=-1, filename="same")
    _trainer(max_epochs=2, callbacks=[mc2]).fit(Logged())
    # The first run's same.ckpt stays; the new run writes same-v1.ckpt (and, with monitor=None, keeps replacing it).
    assert {"same.ckpt", "same-v1.ckpt"} <= set(os.listdir("ck"))
    assert torch.load("ck/same-v1.ckpt", weights_only=True)["global_step"] == 8


def test_every_n_train_steps():
    mc = ModelCheckpoint(dirpath="ck", every_n_train_steps=3, save_top_k=-1)
    _trainer(max_epochs=2, callbacks=[mc]).fit(Logged())
    assert sorted(os.listdir("ck")) == ["epoch=0-step=3.ckpt", "epoch=1-step=6.ckpt"]


@pytest.mark.parametrize("kwargs, words", [
    (dict(mode="avg"), "mode='avg'"),
    (dict(save_top_k=-2), "save_top_k=-2"),
    (dict(save_top_k=3), "monitor=None"),
    (dict(every_n_train_steps=2, every_n_epochs=1), "use only one"),
    (dict(save_last="sometimes"), "save_last='sometimes'"),
])
def test_bad_model_checkpoint_arguments(kwargs, words):
    with pytest.raises(MisconfigurationException, match=words.replace("(", r"\(").replace(")", r"\)")):
        ModelCheckpoint(**kwargs)


def test_unlogged_monitor_and_filename_metric_name_the_logged_ones():
    with pytest.raises(MisconfigurationException, match=r"'val_acc'.*logged metrics: \['val_loss'\]"):
        _trainer(callbacks=[ModelCheckpoint(dirpath="a", monitor="val_acc")]).fit(Logged())
    with pytest.raises(MisconfigurationException, match=r"'acc'.*logged metrics: \['val_loss'\]"):
        _trainer(callbacks=[ModelCheckpoint(dirpath="b", filename="{epoch}-{acc:.2f}")]).fit(Logged())
    assert not os.path.exists("b") or os.listdir("b") == []


def test_resumed_run_keeps_its_top_k():
    mc = ModelCheckpoint(dirpath="ck", monitor="val_loss", save_top_k=2, save_last=True)
    _trainer(max_epochs=2, callbacks=[mc]).fit(Logged())
    mc2 = ModelCheckpoint(dirpath="ck", monitor="val_loss", save_top_k=2, save_last=True)
    trainer = _trainer(max_epochs=3, callbacks=[mc2])
    trainer.fit(Logged(), ckpt_path="last")
    assert trainer.ckpt_path.endswith("last.ckpt")
    assert len(mc2.best_k_models) == 2
    assert all(os.path.exists(p) for p in mc2.best_k_models)
    assert trainer.global_step == 12


# ---------------------------------------------------------------------------------------------- ckpt_path
def test_ckpt_path_errors():
    trainer = _trainer(enable_checkpointing=False)
    with pytest.raises(ValueError, match="needs a ModelCheckpoint"):
        trainer.fit(Logged(), ckpt_path="best")
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        _trainer().fit(Logged(), ckpt_path="missing.ckpt")
    with pytest.raises(ValueError, match="has saved no checkpoint yet"):
        _trainer().validate(Logged(), ckpt_path="best")
    with pytest.warns(UserWarning, match="no checkpoint to resume from"):
        _trainer(max_epochs=1).fit(Logged(), ckpt_path="last")


def test_validate_best_after_fit():
    mc = ModelCheckpoint(dirpath="ck", monitor="val_loss")
    trainer = _trainer(max_epochs=3, callbacks=[mc])
    trainer.fit(Logged())
    best = torch.load(mc.best_model_path, weights_only=True)["state_dict"]
    trainer.lightning_module.layer.weight.data.zero_()
    trainer.validate(ckpt_path="best", verbose=False)
    assert trainer.ckpt_path == mc.best_model_path
    assert torch.equal(trainer.lightning_module.layer.weight, best["layer.weight"])


def test_on_exception_checkpoint_then_resume_with_last():
    class Boom(Logged):
        def training_step(self, batch, batch_idx):
            if self.global_step == 5:
                raise RuntimeError("boom")
            return super().training_step(batch, batch_idx)

    trainer = _trainer(max_epochs=3, callbacks=[OnExceptionCheckpoint("exc")])
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(Boom())
    assert torch.load("exc/on_exception.ckpt", weights_only=True)["global_step"] == 5
    again = _trainer(max_epochs=3, callbacks=[OnExceptionCheckpoint("exc")])
    again.fit(Logged())  # ckpt_path defaults to "last" with an OnExceptionCheckpoint: the newest file wins
    assert again.ckpt_path.endswith("on_exception.ckpt") and again.global_step == 12


# ---------------------------------------------------------------------------------------------- SIGKILL
def _run(args, tmp, check=True, **env_vars):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", **env_vars)
    proc = subprocess.run([sys.executable, str(SCENARIO), str(tmp), *args], env=env, capture_output=True, text=True,
                          timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(proc.stderr[-3000:])
    return proc


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = {}
    for workers in (0, 2):
        folder = tmp_path_factory.mktemp(f"full{workers}")
        _run([str(folder), "--workers", str(workers)][1:], folder)
        out[workers] = (torch.load(folder / "final.pt", weights_only=True), epoch_losses(folder))
    return out


@pytest.mark.parametrize("workers, kill_at", [(0, 2), (0, 5), (0, 9), (2, 6)])
def test_sigkill_then_resume_gives_the_same_weights(tmp_path, uninterrupted, workers, kill_at):
    """Killed inside an accumulation window (after optimizer step ``kill_at``), resumed with ckpt_path="last":
    bitwise the weights of the run that was never stopped (shuffle, dropout, numpy/python/torch randomness in
    training_step, AdamW with a step scheduler, validation every half epoch)."""
    killed = _run(["--workers", str(workers), "--kill-at", str(kill_at)], tmp_path, check=False)
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "final.pt").exists()
    _run(["--workers", str(workers), "--resume"], tmp_path)
    resumed = torch.load(tmp_path / "final.pt", weights_only=True)
    weights, losses = uninterrupted[workers]
    for name, value in weights.items():
        assert torch.equal(value, resumed[name]), name
    assert epoch_losses(tmp_path) == losses  # the resumed epoch's mean includes the batches before the kill


@pytest.mark.parametrize("workers, kill_at", [(0, 5), (2, 6)])
def test_a_stateful_dataloader_resumes_from_its_own_state(tmp_path, workers, kill_at):
    """torchdata's StatefulDataLoader: its state_dict goes into the checkpoint (loadable with weights_only) and
    restores the position itself; killed and resumed, the run ends with the uninterrupted weights."""
    pytest.importorskip("torchdata")
    full = tmp_path / "full"
    full.mkdir()
    _run(["--workers", str(workers)], full, SCENARIO_STATEFUL="1")
    killed = _run(["--workers", str(workers), "--kill-at", str(kill_at)], tmp_path, check=False,
                  SCENARIO_STATEFUL="1")
    assert killed.returncode == -signal.SIGKILL
    record = torch.load(tmp_path / "ckpt" / "every-batch.ckpt", weights_only=True)["fulmen"]
    assert isinstance(record["loader"], dict) and record["loader"]  # the loader's own state_dict
    _run(["--workers", str(workers), "--resume"], tmp_path, SCENARIO_STATEFUL="1")
    resumed, expected = torch.load(tmp_path / "final.pt", weights_only=True), torch.load(full / "final.pt")
    for name, value in expected.items():
        assert torch.equal(value, resumed[name]), name
    assert epoch_losses(tmp_path) == epoch_losses(full)


def test_sigkill_during_saves_never_leaves_a_broken_checkpoint(tmp_path):
    """A process saving a 4 MB checkpoint over and over is killed at random moments: the file under the final
    name always loads, and holds one of the complete versions."""
    code = (
        "import sys, torch; sys.path.insert(0, sys.argv[2]); from fulmen.checkpoint import io\n"
        "print('ready', flush=True); i = 0\n"
        "while True:\n"
        "    i += 1; io.atomic_save({'i': i, 'w': torch.full((1000, 1000), float(i))}, sys.argv[1])\n"
    )
    target = tmp_path / "c.ckpt"
    generator = torch.Generator().manual_seed(0)
    last_seen = 0
    for _ in range(10):
        proc = subprocess.Popen([sys.executable, "-c", code, str(target), str(ROOT)], stdout=subprocess.PIPE,
                                text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(float(torch.rand((), generator=generator)) * 0.4)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if target.exists():
            checkpoint = io.load(target)
            assert torch.equal(checkpoint["w"], torch.full((1000, 1000), float(checkpoint["i"])))
            last_seen = checkpoint["i"]
        names = [n for n in os.listdir(tmp_path) if not n.startswith(io.TMP_PREFIX)]
        assert names in ([], ["c.ckpt"])
    assert last_seen > 0


# ---------------------------------------------------------------------------------------------- more bad input
def test_last_skips_a_checkpoint_that_does_not_load(tmp_path):
    trainer = _trainer(max_epochs=1, default_root_dir=tmp_path)
    trainer.fit(Logged())
    folder = tmp_path / "checkpoints"
    (good,) = os.listdir(folder)
    (folder / "zz-newer.ckpt").write_bytes(b"not a checkpoint")
    newer = os.path.getmtime(folder / good) + 10  # newer by its time stamp, whatever the clock's resolution
    os.utime(folder / "zz-newer.ckpt", (newer, newer))
    again = _trainer(max_epochs=2, default_root_dir=tmp_path)
    with pytest.warns(UserWarning, match="zz-newer.ckpt.*does not load"):
        again.fit(Logged(), ckpt_path="last")
    assert again.ckpt_path == str(folder / good) and again.global_step == 8


def test_a_state_dict_that_does_not_fit_leaves_the_checkpoints_alone(tmp_path):
    trainer = _trainer(max_epochs=1, default_root_dir=tmp_path)
    trainer.fit(Logged())
    folder = tmp_path / "checkpoints"
    before = {name: (folder / name).read_bytes() for name in os.listdir(folder)}

    class Other(Logged):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(32, 3)
            self.extra = torch.nn.Linear(1, 1)

    with pytest.raises(RuntimeError, match=r"size mismatch|shape") as err:
        _trainer(max_epochs=2, default_root_dir=tmp_path).fit(Other(), ckpt_path="last")
    assert "layer.weight" in str(err.value)
    with pytest.raises(RuntimeError, match=r"missing keys \['extra.weight', 'extra.bias'\]"):
        class Extra(Logged):
            def __init__(self) -> None:
                super().__init__()
                self.extra = torch.nn.Linear(1, 1)

        _trainer(max_epochs=2, default_root_dir=tmp_path).fit(Extra(), ckpt_path="last")
    assert {name: (folder / name).read_bytes() for name in os.listdir(folder)} == before


def test_hparams_file_replaces_the_saved_hyperparameters(tmp_path):
    trainer = _trainer(max_epochs=1)
    trainer.fit(Logged(lr=0.05))
    trainer.save_checkpoint("m.ckpt")
    (tmp_path / "hparams.yaml").write_text("lr: 0.25\n")
    assert Logged.load_from_checkpoint("m.ckpt", hparams_file=tmp_path / "hparams.yaml").hparams.lr == 0.25
    (tmp_path / "evil.yaml").write_text("lr: !!python/object/apply:os.system ['echo unsafe']\n")
    with pytest.raises(Exception, match="python/object"):
        Logged.load_from_checkpoint("m.ckpt", hparams_file=tmp_path / "evil.yaml")
    with pytest.raises(ValueError, match=r"\.yaml or \.yml"):
        Logged.load_from_checkpoint("m.ckpt", hparams_file=tmp_path / "hparams.json")


def test_model_checkpoint_on_an_fsspec_url(tmp_path):
    url = f"memory://fulmen-mc/{tmp_path.name}"  # the memory filesystem lives as long as the process
    mc = ModelCheckpoint(dirpath=url, monitor="val_loss", save_top_k=2, save_last=True)
    trainer = _trainer(max_epochs=3, callbacks=[mc])
    trainer.fit(Logged())
    assert mc.best_model_path.startswith(url + "/") and io.exists(mc.best_model_path)
    assert sorted(os.path.basename(p) for p in io.listdir(url)) == sorted(
        [os.path.basename(p) for p in mc.best_k_models] + ["last.ckpt"])
    assert Logged.load_from_checkpoint(mc.best_model_path).hparams.lr == 0.1
    again = _trainer(max_epochs=4, callbacks=[ModelCheckpoint(dirpath=url, monitor="val_loss", save_top_k=2,
                                                              save_last=True)])
    again.fit(Logged(), ckpt_path="last")
    assert again.ckpt_path == f"{url}/last.ckpt" and again.global_step == 16


def test_resume_from_on_train_epoch_end_logs_that_epochs_aggregates_once():
    from fulmen.loggers import Logger

    class Recording(Logger):
        name, version = "rec", 0

        def __init__(self) -> None:
            super().__init__()
            self.calls = []

        def log_metrics(self, metrics, step=None):
            self.calls.append((step, {k: float(v) for k, v in metrics.items()}))

        def log_hyperparams(self, params, *args, **kwargs):
            pass

    class EpochMean(Logged):
        def training_step(self, batch, batch_idx):
            out = super().training_step(batch, batch_idx)
            self.log("mean_loss", out["loss"], on_step=False, on_epoch=True)
            return out

    class CrashAfterSave(Callback):
        _runs_after_module_epoch_end = True

        def on_train_epoch_end(self, trainer, pl_module):
            trainer.save_checkpoint("end0.ckpt")
            raise RuntimeError("crash after the save")

    def run(callbacks, ckpt_path=None):
        logger = Recording()
        torch.manual_seed(0)
        trainer = _trainer(max_epochs=2, logger=logger, callbacks=callbacks, limit_val_batches=0)
        try:
            trainer.fit(EpochMean(), ckpt_path=ckpt_path)
        except RuntimeError:
            pass
        return [(step, m) for step, m in logger.calls if "mean_loss" in m]

    full = run([])
    assert run([CrashAfterSave()]) == []  # the crash came before epoch 0's values reached the logger
    assert run([], ckpt_path="end0.ckpt") == full

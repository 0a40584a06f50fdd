"""LightningCLI and the ``fulmen`` command: configs and overrides reach the Trainer, model and data module; the
subcommands run; the config is saved next to the logs; a bad config stops before training with the file and line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

pytest.importorskip("jsonargparse")

import fulmen  # noqa: E402
from fulmen.callbacks import EarlyStopping  # noqa: E402
from fulmen.cli import LightningCLI, ReduceLROnPlateau, SaveConfigCallback  # noqa: E402
from tests.cli_models import Composed, Data, Model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


@pytest.fixture(autouse=True)
def plain_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["prog"])  # pytest's own arguments are not the CLI's


def write(path, text):
    path.write_text(text)
    return str(path)


def small(tmp_path):
    """Options for a short run logging to ``tmp_path`` with a CSV logger (version 0)."""
    return [f"--trainer.default_root_dir={tmp_path}", "--trainer.max_epochs=1", "--trainer.limit_train_batches=3",
            "--trainer.limit_val_batches=2", "--trainer.logger=CSVLogger", f"--trainer.logger.save_dir={tmp_path}",
            *QUIET]


def test_fit_from_configs_and_overrides(tmp_path):
    first = write(tmp_path / "a.yaml", "trainer:\n  max_epochs: 5\nmodel:\n  hidden: 6\n  lr: 0.5\n")
    second = write(tmp_path / "b.yaml", "model:\n  hidden: 9\n")
    cli = LightningCLI(Model, Data, args=["fit", "--config", first, "--config", second, *small(tmp_path),
                                          "--model.lr=0.25", "--data.batch_size=4", "--seed_everything=5"])
    # Later files, then the command line win; the CLI notes how to rebuild the model, as Lightning's does.
    assert cli.model.hparams == {"hidden": 9, "lr": 0.25, "_instantiator": "fulmen.cli.instantiate_module"}
    assert cli.model.layer[0].out_features == 9 and cli.datamodule.batch_size == 4
    assert cli.trainer.max_epochs == 1 and cli.trainer.global_step == 3  # the override beat the file
    assert cli.trainer.optimizers[0].param_groups[0]["lr"] == 0.25

    saved = yaml.safe_load((tmp_path / "lightning_logs" / "version_0" / "config.yaml").read_text())
    assert saved["seed_everything"] == 5 and saved["model"] == {"hidden": 9, "lr": 0.25}
    assert saved["trainer"]["max_epochs"] == 1 and saved["data"]["batch_size"] == 4
    assert saved["ckpt_path"] is None

    # The saved config repeats the run: same weights.
    torch.manual_seed(0)
    again = LightningCLI(Model, Data, args=["fit", "--config", str(tmp_path / "lightning_logs/version_0/config.yaml"),
                                            f"--trainer.logger.save_dir={tmp_path / 'again'}"])
    for a, b in zip(cli.model.parameters(), again.model.parameters()):
        assert torch.equal(a, b)


def test_the_saved_config_is_never_overwritten(tmp_path):
    LightningCLI(Model, args=["fit", *small(tmp_path), "--trainer.logger.version=0"])
    with pytest.raises(RuntimeError, match="would overwrite .*config.yaml.*overwrite"):
        LightningCLI(Model, args=["fit", *small(tmp_path), "--trainer.logger.version=0"])
    LightningCLI(Model, args=["fit", *small(tmp_path), "--trainer.logger.version=0"],
                 save_config_kwargs={"overwrite": True})
    LightningCLI(Model, args=["fit", *small(tmp_path), "--trainer.logger.version=0"], save_config_callback=None)


def test_save_config_elsewhere_by_subclassing(tmp_path):
    saved = []

    class ToList(SaveConfigCallback):
        def save_config(self, trainer, pl_module, stage):
            saved.append(self.parser.dump(self.config, skip_none=False))

    LightningCLI(Model, args=["fit", *small(tmp_path)], save_config_callback=ToList,
                 save_config_kwargs={"save_to_log_dir": False})
    assert len(saved) == 1 and "hidden: 4" in saved[0]
    assert not (tmp_path / "lightning_logs" / "version_0" / "config.yaml").exists()
    with pytest.raises(ValueError, match="save_to_log_dir=False"):
        SaveConfigCallback(None, None, save_to_log_dir=False)


def test_print_config(capsys):
    with pytest.raises(SystemExit) as exit_:
        LightningCLI(Model, args=["fit", "--model.hidden=3", "--print_config"])
    assert exit_.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"] == {"hidden": 3, "lr": 0.1} and "max_epochs" in printed["trainer"]


def test_run_false_builds_without_running():
    cli = LightningCLI(Model, args=["--model.hidden=5", "--trainer.max_epochs=2", *QUIET], run=False)
    assert cli.subcommand is None and cli.model.hparams.hidden == 5
    assert cli.trainer.max_epochs == 2 and cli.trainer.global_step == 0


def test_any_subclass_by_class_path_and_callbacks_from_the_config(tmp_path):
    config = write(tmp_path / "c.yaml", """\
model:
  class_path: tests.cli_models.Model
  init_args:
    hidden: 3
data: tests.cli_models.Data
trainer:
  callbacks:
    - class_path: fulmen.callbacks.EarlyStopping
      init_args:
        monitor: val_loss
        patience: 7
""")
    cli = LightningCLI(args=["fit", "-c", config, *small(tmp_path)])
    assert type(cli.model) is Model and type(cli.datamodule) is Data
    stops = [c for c in cli.trainer.callbacks if isinstance(c, EarlyStopping)]
    assert len(stops) == 1 and stops[0].patience == 7
    assert any(isinstance(c, SaveConfigCallback) for c in cli.trainer.callbacks)

    cli = LightningCLI(Model, subclass_mode_model=True, args=["fit", "--model=Model", *small(tmp_path / "2")])
    assert type(cli.model) is Model


def test_optimizer_and_scheduler_from_the_command_line(tmp_path):
    with pytest.warns(UserWarning, match="configure_optimizers is replaced"):
        cli = LightningCLI(Model, args=["fit", *small(tmp_path), "--optimizer=Adam", "--optimizer.lr=0.02",
                                        "--lr_scheduler=StepLR", "--lr_scheduler.step_size=1"])
    optimizer = cli.trainer.optimizers[0]
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.param_groups[0]["initial_lr"] == 0.02
    assert isinstance(cli.trainer.lr_scheduler_configs[0].scheduler, torch.optim.lr_scheduler.StepLR)

    with pytest.warns(UserWarning):
        cli = LightningCLI(Model, args=["fit", *small(tmp_path / "2"), "--optimizer=SGD", "--optimizer.lr=0.1",
                                        "--lr_scheduler=fulmen.cli.ReduceLROnPlateau",
                                        "--lr_scheduler.monitor=val_loss"])
    config = cli.trainer.lr_scheduler_configs[0]
    assert isinstance(config.scheduler, ReduceLROnPlateau) and config.monitor == "val_loss"


def test_trainer_defaults_and_environment(tmp_path, monkeypatch):
    stop = EarlyStopping("val_loss")
    cli = LightningCLI(Model, run=False, args=QUIET,
                       trainer_defaults={"max_epochs": 4, "callbacks": [stop]})
    assert cli.trainer.max_epochs == 4 and stop in cli.trainer.callbacks

    monkeypatch.setenv("PL_TRAINER__MAX_EPOCHS", "6")
    cli = LightningCLI(Model, run=False, args=QUIET, parser_kwargs={"default_env": True})
    assert cli.trainer.max_epochs == 6


def test_linking_arguments(tmp_path):
    class Linked(LightningCLI):
        def add_arguments_to_parser(self, parser):
            parser.link_arguments("data.batch_size", "model.hidden")
            parser.add_lightning_class_args(EarlyStopping, "early_stopping")
            parser.set_defaults({"early_stopping.monitor": "val_loss"})

    cli = Linked(Model, Data, run=False, args=["--data.batch_size=12", *QUIET])
    assert cli.model.hparams.hidden == 12
    assert any(isinstance(c, EarlyStopping) and c.monitor == "val_loss" for c in cli.trainer.callbacks)


def test_validate_test_predict_from_a_checkpoint(tmp_path):
    fit = LightningCLI(Model, args=["fit", *small(tmp_path), "--model.hidden=5"])
    path = fit.trainer.checkpoint_callback.best_model_path
    # --ckpt_path brings the model's saved hyperparameters: hidden=5 without saying it again.
    for subcommand in ("validate", "test", "predict"):
        cli = LightningCLI(Model, args=[subcommand, *small(tmp_path / subcommand), f"--ckpt_path={path}"])
        assert cli.model.hparams.hidden == 5
        for a, b in zip(fit.model.parameters(), cli.model.parameters()):
            assert torch.equal(a, b)
    assert "test_loss" in cli.trainer.callback_metrics or subcommand == "predict"


def test_a_model_built_from_classes_reloads_from_its_checkpoint(tmp_path):
    config = write(tmp_path / "c.yaml", """\
model:
  encoder:
    class_path: tests.cli_models.Encoder
    init_args:
      width: 5
  classes: 3
""")
    cli = LightningCLI(Composed, args=["fit", "-c", config, *small(tmp_path)])
    assert cli.model.hparams["encoder"]["init_args"] == {"width": 5}  # the config, not the object
    path = cli.trainer.checkpoint_callback.best_model_path
    loaded = Composed.load_from_checkpoint(path)
    assert loaded.layer[0].out_features == 5 and loaded.layer[1].out_features == 3
    for a, b in zip(cli.model.parameters(), loaded.parameters()):
        assert torch.equal(a, b)
    logged = yaml.safe_load((tmp_path / "lightning_logs" / "version_0" / "hparams.yaml").read_text())
    assert "_instantiator" not in logged and "_class_path" not in logged


def test_a_checkpoint_cannot_name_other_code(tmp_path):
    cli = LightningCLI(args=["fit", "--model=tests.cli_models.Model", *small(tmp_path)])
    path = cli.trainer.checkpoint_callback.best_model_path
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["hyper_parameters"]["_class_path"] == "tests.cli_models.Model"

    checkpoint["hyper_parameters"]["_instantiator"] = "os.system"
    torch.save(checkpoint, tmp_path / "evil.ckpt")
    with pytest.raises(ValueError, match="'os.system'.*only runs 'fulmen.cli.instantiate_module'"):
        Model.load_from_checkpoint(tmp_path / "evil.ckpt")

    checkpoint["hyper_parameters"]["_instantiator"] = "fulmen.cli.instantiate_module"
    checkpoint["hyper_parameters"]["_class_path"] = "not_imported_anywhere.Model"
    torch.save(checkpoint, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="not_imported_anywhere.Model.*not an imported subclass"):
        Model.load_from_checkpoint(tmp_path / "other.ckpt")
    assert "not_imported_anywhere" not in sys.modules


@pytest.mark.parametrize("text, where, words", [
    ("trainer:\n  max_epochs: 1\n  max_epoch: 3\n", "line 3: trainer.max_epoch", "max_epoch"),
    ("model:\n  class_path: tests.cli_models.Model\n  init_args:\n    hidden: seven\n",
     "line 4: model.init_args.hidden", "Expected a <class 'int'>"),
    ("model:\n  class_path: tests.cli_models.Modle\n", "line 2: model.class_path", "Modle"),
    ("model:\n  class_path: tests.cli_models.Model\n  init_args:\n    hiden: 3\n", "line 4: model.init_args.hiden",
     "hiden"),
])
def test_config_errors_name_the_file_and_line_before_training(tmp_path, capsys, text, where, words):
    config = write(tmp_path / "bad.yaml", text)
    with pytest.raises(SystemExit) as exit_:
        LightningCLI(args=["fit", "--config", config, f"--trainer.default_root_dir={tmp_path}"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"(in {config}, {where})" in err and words in err
    assert not (tmp_path / "lightning_logs").exists()  # nothing ran


def test_the_fulmen_command(tmp_path):
    (tmp_path / "mypkg.py").write_text(
        "from tests.cli_models import Model as Base, Data\n"
        "class Model(Base):\n"
        "    pass\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "fulmen.commands"]
    run = subprocess.run([*command, "fit", "--model=mypkg.Model", "--data=mypkg.Data", *small(tmp_path)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    saved = yaml.safe_load((tmp_path / "lightning_logs" / "version_0" / "config.yaml").read_text())
    assert saved["model"]["class_path"] == "mypkg.Model"

    run = subprocess.run([*command, "fit", "--model=mypkg.Nope"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 2 and "mypkg.Nope" in run.stderr

    run = subprocess.run([*command, "--help"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and "fit" in run.stdout and "plot" in run.stdout

    # Each Trainer option shows its description (from the Trainer's docstring), as LightningCLI's help does.
    run = subprocess.run([*command, "fit", "--help"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr
    help_text = " ".join(run.stdout.split())
    assert "--trainer.max_epochs MAX_EPOCHS stop after this many epochs" in help_text, run.stdout[:3000]
    assert "--trainer.accumulate_grad_batches ACCUMULATE_GRAD_BATCHES" in help_text


@pytest.mark.parametrize("how", ["python -m fulmen", "fulmen"])
def test_version_from_the_command_and_python_m(tmp_path, how):
    script = Path(sys.executable).with_name("fulmen")
    command = [sys.executable, "-m", "fulmen"] if how == "python -m fulmen" else [str(script)]
    if how == "fulmen" and not script.exists():
        pytest.skip("the fulmen console script is not installed next to this Python")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for flag in ("--version", "-V"):
        run = subprocess.run([*command, flag], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0 and run.stdout.startswith(f"fulmen {fulmen.__version__} (torch "), run.stderr


def test_without_jsonargparse_the_error_names_the_extra(tmp_path):
    code = ("import sys; sys.modules['jsonargparse'] = None\n"
            "try:\n    import fulmen.cli\nexcept ModuleNotFoundError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600).stdout
    assert "pip install 'fulmen[cli]'" in out
    code = "import sys, fulmen, fulmen.callbacks, fulmen.loggers; print('jsonargparse' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600).stdout
    assert out.strip() == "False"  # only fulmen.cli imports it


def test_args_as_a_dict_and_a_trainer_from_a_function(tmp_path):
    def make_trainer(max_epochs: int = 1, **kwargs) -> fulmen.Trainer:
        """A function that returns a Trainer."""
        return fulmen.Trainer(max_epochs=max_epochs, enable_progress_bar=False, enable_model_summary=False,
                              logger=False, **kwargs)

    cli = LightningCLI(Model, run=False, trainer_class=make_trainer,
                       args={"model": {"hidden": 6}, "trainer": {"max_epochs": 2}})
    assert cli.model.hparams.hidden == 6 and cli.trainer.max_epochs == 2


def test_subcommand_parser_kwargs_and_a_before_and_after_hook(tmp_path):
    calls = []

    class Hooked(LightningCLI):
        def before_fit(self):
            calls.append(("before", self.trainer.global_step))

        def after_fit(self):
            calls.append(("after", self.trainer.global_step))

    Hooked(Model, args=["fit", *small(tmp_path)], parser_kwargs={"fit": {"default_config_files": []}})
    assert calls == [("before", 0), ("after", 3)]


@pytest.mark.parametrize("args, place", [
    (["--config", "{config}", "--trainer.max_epochs=two"], "(on the command line: --trainer.max_epochs=two)"),
    (["--trainer.max_epochs=two", "--config", "{config}"], "(on the command line: --trainer.max_epochs=two)"),
    (["--config", "{config}", "--model.hiden=3"], "(on the command line: --model.hiden=3)"),
])
def test_a_bad_value_from_the_command_line_is_blamed_on_the_command_line(tmp_path, capsys, args, place):
    """The config file is valid (max_epochs: 30 on its line 2); the bad value came from the command line, and the
    error says so instead of pointing at a line of the file."""
    config = write(tmp_path / "good.yaml", "trainer:\n  max_epochs: 30\nmodel:\n  class_path: tests.cli_models.Model\n"
                                           "  init_args:\n    hidden: 8\n")
    with pytest.raises(SystemExit):
        LightningCLI(args=["fit", *[a.format(config=config) for a in args],
                           f"--trainer.default_root_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert place in err and f"(in {config}" not in err, err[-2000:]

"""A config written by Lightning's CLI runs on fulmen's: the Trainer section has the same keys and defaults, and the
same config file builds the same Trainer settings on both."""

from __future__ import annotations

import sys

import pytest
import yaml

pytest.importorskip("jsonargparse")
pytest.importorskip("pytorch_lightning")


def _printed(capsys, module, args):
    cli = __import__(f"{module}.cli", fromlist=["LightningCLI"]).LightningCLI
    demos = __import__(f"{module}.demos" if module == "fulmen" else f"{module}.demos.boring_classes",
                       fromlist=["BoringModel"])
    with pytest.raises(SystemExit):
        cli(demos.BoringModel, args=["fit", *args, "--print_config"])
    return yaml.safe_load(capsys.readouterr().out)


def test_lightning_configs_run_on_fulmen(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["prog"])
    theirs = _printed(capsys, "pytorch_lightning", [])
    ours = _printed(capsys, "fulmen", [])
    assert set(ours["trainer"]) >= set(theirs["trainer"])
    # Lightning's defaults, as dumped, are fulmen's too (precision: None means the same 32-true on both).
    differing = {k: (ours["trainer"][k], v) for k, v in theirs["trainer"].items() if ours["trainer"][k] != v}
    assert differing == {}
    assert set(ours) - {"model"} == set(theirs) - {"model"}

    # Lightning's dump, with settings changed, read back by fulmen's CLI.
    theirs["trainer"].update(max_epochs=3, accumulate_grad_batches=2, gradient_clip_val=0.5, precision="bf16-mixed",
                             limit_val_batches=0.25, val_check_interval=0.5, log_every_n_steps=7)
    theirs["model"] = None
    path = tmp_path / "lightning.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in theirs.items() if k != "model"}))
    again = _printed(capsys, "fulmen", ["--config", str(path)])
    assert {k: again["trainer"][k] for k in theirs["trainer"]} == theirs["trainer"]

"""Under DDP the strategy gives each process its share of the data as Lightning does: the training share always
shuffled (whatever the loader did), evaluation in the loader's order, predict without repeats. Checked on the
samplers themselves, and on a real 2-process fit of each framework, which must end with the same weights."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
import torch
from torch.utils.data import DataLoader

from fulmen.loops.fetchers import distributed_sampler
from tests.test_ddp import clean_env

SCRIPT = os.path.join(os.path.dirname(__file__), "ddp_both.py")


def _lightning_shares(loader, stage, world):
    from pytorch_lightning.trainer.connectors.data_connector import _get_distributed_sampler
    from pytorch_lightning.trainer.states import RunningStage
    from pytorch_lightning.utilities.data import _is_dataloader_shuffled

    mode = {"train": RunningStage.TRAINING, "val": RunningStage.VALIDATING, "predict": RunningStage.PREDICTING}[stage]
    # As Lightning's _process_dataloader decides it: training shuffles always, the others when the loader does.
    shuffle = True if stage == "train" else _is_dataloader_shuffled(loader)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [list(_get_distributed_sampler(loader, shuffle, 0, mode, num_replicas=world, rank=rank))
                for rank in range(world)]


@pytest.mark.parametrize("stage", ["train", "val", "predict"])
@pytest.mark.parametrize("make", [
    lambda: DataLoader(list(range(11)), batch_size=2),
    lambda: DataLoader(list(range(11)), batch_size=2, shuffle=True),
    lambda: DataLoader(list(range(11)), sampler=list(reversed(range(11)))),
], ids=["ordered", "shuffled", "own-sampler"])
@pytest.mark.parametrize("world", [2, 3])
def test_each_process_gets_lightnings_share(make, stage, world, monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "5")
    torch.manual_seed(0)  # a RandomSampler inside a wrapper draws from the global generator at each epoch
    ours = [list(distributed_sampler(make(), world, rank, train=stage == "train", predicting=stage == "predict"))
            for rank in range(world)]
    torch.manual_seed(0)
    assert ours == _lightning_shares(make(), stage, world)


@pytest.mark.parametrize("shuffle", [False, True], ids=["ordered-loader", "shuffled-loader"])
def test_two_process_fit_ends_with_lightnings_weights(tmp_path, shuffle):
    for framework in ("fulmen", "lightning"):
        proc = subprocess.run([sys.executable, SCRIPT, str(tmp_path), framework, *(["--shuffle"] if shuffle else [])],
                              env=clean_env(), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{framework}: {proc.stderr[-3000:]}"
    ours = torch.load(tmp_path / "fulmen.pt", weights_only=True)
    theirs = torch.load(tmp_path / "lightning.pt", weights_only=True)
    torch.testing.assert_close(ours["weights"], theirs["weights"], rtol=0, atol=1e-6)
    assert ours["seen"] == theirs["seen"]
    assert ours["seen"][0][:12] != list(range(0, 24, 2))  # the training share was shuffled, even from an ordered loader

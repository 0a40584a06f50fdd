import os
import warnings

import pytest
import torch

from fulmen.utilities.rank_zero import rank_zero_only

# One thread: the tests are small, and CI has 2 cores shared by 2 xdist workers.
torch.set_num_threads(1)
# MLflow's telemetry thread writes os.environ while other threads (requests, wandb) iterate it, which fails at
# random with a KeyError; there is no network here to send it to anyway.
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"


@pytest.fixture(autouse=True)
def _clean_env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith("PL_"):
            monkeypatch.delenv(key)
    warnings.simplefilter("ignore", category=UserWarning)
    # A strategy configured in a test sets the process's rank for rank_zero_only; put it back afterwards.
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    yield

"""What reaches a logger, and at which step, agrees with pytorch-lightning."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
import torch

from tests.parity.compare import assert_same_logger_calls
from tests.parity.test_metrics import make_model

pytest.importorskip("pytorch_lightning")


def recording_logger(framework: str) -> Any:
    base = importlib.import_module("fulmen.loggers" if framework == "fulmen" else "pytorch_lightning.loggers").Logger

    class Recording(base):
        def __init__(self):
            super().__init__()
            self.calls: list[tuple[int, dict[str, float]]] = []

        name = "rec"
        version = 0

        def log_metrics(self, metrics, step=None):
            self.calls.append((step, {k: float(v) for k, v in metrics.items()}))

        def log_hyperparams(self, params, *args, **kwargs):
            pass

    return Recording()


def fit_with_recording_logger(framework: str, build: Any, **trainer_kwargs: Any) -> tuple[Any, Any, Any]:
    """Seed, build the module with ``build(framework)``, fit it with a recording logger: (trainer, model, logger)."""
    torch.manual_seed(0)
    pl, Model = build(framework)
    logger = recording_logger(framework)
    trainer = pl.Trainer(logger=logger, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, **trainer_kwargs)
    model = Model()
    trainer.fit(model)
    return trainer, model, logger


@pytest.mark.parametrize("kwargs", [
    dict(max_epochs=2, log_every_n_steps=2),
    dict(max_epochs=1, log_every_n_steps=1, accumulate_grad_batches=2, val_check_interval=3),
    dict(max_epochs=1, log_every_n_steps=1, several_val=True),
])
def test_logger_receives_the_same_calls(kwargs):
    several = kwargs.pop("several_val", False)
    got = {}
    for framework in ("fulmen", "pytorch_lightning"):
        trainer, model, logger = fit_with_recording_logger(framework, lambda fw: make_model(fw, several), **kwargs)
        trainer.validate(model, verbose=False)
        got[framework] = logger.calls
    assert_same_logger_calls(got["fulmen"], got["pytorch_lightning"])

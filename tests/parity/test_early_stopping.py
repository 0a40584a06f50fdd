"""EarlyStopping on both frameworks: the same scripted metric gives the same stopping epoch and step, counter,
best score and reason, whether the check runs at the epoch end or at each validation, and with min_epochs."""

from __future__ import annotations

import importlib
import math

import pytest

from tests.parity.recorder import load, quiet_trainer

pytest.importorskip("pytorch_lightning")


def _run(framework, scores, es_kwargs, trainer_kwargs):
    pl, demos = load(framework)
    module = "fulmen.callbacks" if framework == "fulmen" else "pytorch_lightning.callbacks"
    EarlyStopping = importlib.import_module(module).EarlyStopping

    class Scripted(demos.BoringModel):
        runs = 0

        def on_validation_epoch_end(self):
            self.log("val_loss", float(scores[min(self.runs, len(scores) - 1)]))
            self.runs += 1

    es = EarlyStopping(**{"monitor": "val_loss", **es_kwargs})
    trainer_kwargs = {"max_epochs": 8, "limit_train_batches": 4, "limit_val_batches": 1, "num_sanity_val_steps": 0,
                      **trainer_kwargs}
    trainer = quiet_trainer(pl, callbacks=[es], **trainer_kwargs)
    model = Scripted()
    trainer.fit(model)
    best = float(es.best_score)
    return {"epoch": trainer.current_epoch, "step": trainer.global_step, "should_stop": trainer.should_stop,
            "validations": model.runs, "stopped_epoch": es.stopped_epoch, "wait": es.wait_count,
            "best": "nan" if math.isnan(best) else best, "reason": es.stopping_reason.value,
            "state_keys": sorted(es.state_dict()), "state_key": es.state_key}


@pytest.mark.parametrize("scores, es_kwargs, trainer_kwargs", [
    ([5, 4, 4.5, 4.2, 1], dict(patience=2), {}),
    ([5, 4.7, 4.6, 3], dict(patience=2, min_delta=0.5), {}),
    ([0.1, 0.5, 0.95], dict(mode="max", stopping_threshold=0.9), {}),
    ([3, 2, 11, 1], dict(divergence_threshold=10), {}),
    ([3, math.nan, 1], dict(), {}),
    ([1, 2, 3, 4, 5, 6], dict(patience=1), dict(min_epochs=4)),
    ([5, 6, 7, 8, 9], dict(patience=3), dict(val_check_interval=0.5)),
    ([5, 6, 7, 8, 9], dict(patience=3, check_on_train_epoch_end=True), dict(val_check_interval=0.5)),
    ([5, 6, 7], dict(patience=1), dict(limit_train_batches=6, val_check_interval=2)),
    ([5, 6, 7, 8], dict(patience=2), dict(min_steps=14)),
    ([5, 6, 7, 8], dict(patience=1), dict(check_val_every_n_epoch=2)),
    ([1], dict(monitor="val_acc", strict=False), dict(max_epochs=3)),
])
def test_early_stopping_matches_lightning(scores, es_kwargs, trainer_kwargs):
    assert _run("fulmen", scores, es_kwargs, trainer_kwargs) == _run("pytorch_lightning", scores, es_kwargs,
                                                                     trainer_kwargs)

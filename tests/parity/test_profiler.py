"""SimpleProfiler on both frameworks: every action fulmen records is one Lightning records, as often."""

from __future__ import annotations

import importlib

import pytest

from tests.parity.recorder import load, quiet_trainer

pytest.importorskip("pytorch_lightning")


def test_profiler_actions_match_lightning():
    counts = {}
    for framework in ("fulmen", "pytorch_lightning"):
        pl, demos = load(framework)
        profilers = importlib.import_module("fulmen.profilers" if framework == "fulmen" else
                                            "pytorch_lightning.profilers")

        class Model(demos.BoringModel):
            def on_train_epoch_start(self):
                pass

            def on_validation_epoch_end(self):
                pass

        class Noting(pl.Callback):
            def on_train_batch_end(self, *args):
                pass

        profiler = profilers.SimpleProfiler()
        trainer = quiet_trainer(pl, profiler=profiler, callbacks=[Noting()], max_epochs=2, limit_train_batches=3,
                                limit_val_batches=2)
        trainer.fit(Model())
        trainer.test(Model(), verbose=False)
        counts[framework] = {k: len(v) for k, v in profiler.recorded_durations.items()}
    ours, theirs = counts["fulmen"], counts["pytorch_lightning"]
    assert {k: theirs.get(k) for k in ours} == ours
    for action in ("run_training_epoch", "run_training_batch", "[_TrainingEpochLoop].train_dataloader_next",
                   "[_EvaluationLoop].val_next", "[Strategy]SingleDeviceStrategy.training_step",
                   f"[Callback]{Noting.__qualname__}.on_train_batch_end",  # state_key: the qualified name
                   "[LightningModule]Model.on_validation_epoch_end"):
        assert action in ours, action

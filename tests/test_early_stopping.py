"""EarlyStopping: patience, min_delta, modes, thresholds, non-finite values, strictness, min_epochs, where the
check runs, and its state in checkpoints."""

from __future__ import annotations

import logging
import math

import pytest
import torch

import fulmen as L
from fulmen.callbacks import EarlyStopping, EarlyStoppingReason
from fulmen.demos.boring_classes import BoringModel
from fulmen.utilities.exceptions import MisconfigurationException


class Scripted(BoringModel):
    """Logs ``val_loss`` = the next value of ``scores`` at each validation run (one per epoch by default)."""

    def __init__(self, scores) -> None:
        super().__init__()
        self.scores = list(scores)
        self.runs = 0

    def on_validation_epoch_end(self) -> None:
        self.log("val_loss", float(self.scores[min(self.runs, len(self.scores) - 1)]))
        self.runs += 1


def _fit(scores, callback, max_epochs=10, model=None, **kwargs):
    defaults = dict(max_epochs=max_epochs, limit_train_batches=2, limit_val_batches=1, enable_progress_bar=False,
                    enable_model_summary=False, logger=False, enable_checkpointing=False, num_sanity_val_steps=0)
    defaults.update(kwargs)
    trainer = L.Trainer(callbacks=[callback], **defaults)
    trainer.fit(model or Scripted(scores))
    return trainer


def test_patience_counts_checks_without_improvement(caplog):
    es = EarlyStopping("val_loss", patience=2)
    with caplog.at_level(logging.INFO, logger="fulmen"):
        trainer = _fit([5, 4, 4.5, 4.2, 1], es)
    # Epoch 1 is the best (4); epochs 2 and 3 do not beat it: the second of them exhausts the patience.
    assert trainer.current_epoch == 4 and trainer.should_stop
    assert es.stopped_epoch == 3 and es.wait_count == 2 and float(es.best_score) == 4
    assert es.stopping_reason == EarlyStoppingReason.PATIENCE_EXHAUSTED
    assert "did not improve in the last 2 checks" in es.stopping_reason_message
    assert es.stopping_reason_message in caplog.text  # printed even without verbose


def test_min_delta_demands_a_large_enough_improvement():
    es = EarlyStopping("val_loss", patience=2, min_delta=0.5)
    _fit([5, 4.7, 4.6, 3], es)
    assert es.stopped_epoch == 2 and float(es.best_score) == 5 and es.min_delta == -0.5


def test_mode_max_and_thresholds():
    es = EarlyStopping("val_loss", mode="max", patience=5, stopping_threshold=0.9)
    _fit([0.1, 0.5, 0.95, 0.97], es)
    assert es.stopped_epoch == 2 and es.stopping_reason == EarlyStoppingReason.STOPPING_THRESHOLD
    es = EarlyStopping("val_loss", patience=5, divergence_threshold=10)
    _fit([3, 2, 11, 1], es)
    assert es.stopped_epoch == 2 and es.stopping_reason == EarlyStoppingReason.DIVERGENCE_THRESHOLD
    assert "divergence_threshold=10" in es.stopping_reason_message


def test_non_finite_metric_stops_unless_check_finite_is_off():
    es = EarlyStopping("val_loss", patience=5)
    _fit([3, math.nan, 1], es)
    assert es.stopped_epoch == 1 and es.stopping_reason == EarlyStoppingReason.NON_FINITE_METRIC
    es = EarlyStopping("val_loss", patience=5, check_finite=False)
    trainer = _fit([3, math.nan, 1], es, max_epochs=3)
    assert not trainer.should_stop and es.stopping_reason == EarlyStoppingReason.NOT_STOPPED


def test_missing_metric_raises_when_strict_and_is_skipped_otherwise():
    with pytest.raises(RuntimeError, match=r"monitor='val_acc'.*logged metrics: \['val_loss'\]"):
        _fit([1], EarlyStopping("val_acc"))
    trainer = _fit([1], EarlyStopping("val_acc", strict=False), max_epochs=3)
    assert trainer.current_epoch == 3 and not trainer.should_stop


def test_min_epochs_is_honoured(caplog):
    es = EarlyStopping("val_loss", patience=1)
    with caplog.at_level(logging.INFO, logger="fulmen"):
        trainer = _fit([1, 2, 3, 4, 5, 6], es, min_epochs=4)
    assert es.stopped_epoch == 3 and trainer.current_epoch == 4  # signalled after epoch 1, held until 4 epochs
    assert "min_epochs=4" in caplog.text


def test_checks_at_validation_end_when_validation_runs_twice_an_epoch():
    es = EarlyStopping("val_loss", patience=3)
    trainer = _fit([5, 6, 7, 8, 9], es, limit_train_batches=4, val_check_interval=0.5)
    # Four validation runs give three checks without improvement: stop after the 2nd epoch's last batch.
    assert es._check_on_train_epoch_end is False and es.stopped_epoch == 1
    assert trainer.global_step == 8 and trainer.current_epoch == 2
    es = EarlyStopping("val_loss", patience=3, check_on_train_epoch_end=True)
    trainer = _fit([5, 6, 7, 8, 9], es, limit_train_batches=4, val_check_interval=0.5)
    # Once per epoch: the checks see 6 (the best), 8, 9, 9; the third without improvement is at epoch 3.
    assert es.stopped_epoch == 3


def test_stop_mid_epoch_ends_at_the_next_batch():
    es = EarlyStopping("val_loss", patience=1)
    trainer = _fit([5, 6, 7], es, limit_train_batches=6, val_check_interval=2, max_epochs=3)
    assert trainer.global_step == 4 and trainer.current_epoch == 1 and es.stopped_epoch == 0


def test_fast_dev_run_skips_the_check():
    es = EarlyStopping("missing")
    _fit([1], es, fast_dev_run=2)
    assert es.wait_count == 0 and es.stopping_reason == EarlyStoppingReason.NOT_STOPPED


def test_state_round_trips_through_a_checkpoint(tmp_path):
    es = EarlyStopping("val_loss", patience=3)
    trainer = _fit([5, 6, 7], es, max_epochs=2)
    assert es.wait_count == 1
    path = tmp_path / "a.ckpt"
    trainer.save_checkpoint(path)
    saved = torch.load(path, weights_only=True)["callbacks"]["EarlyStopping{'monitor': 'val_loss', 'mode': 'min'}"]
    assert saved == {"wait_count": 1, "stopped_epoch": 0, "best_score": torch.tensor(5.0), "patience": 3,
                     "stopping_reason": 0, "stopping_reason_message": None}
    resumed = EarlyStopping("val_loss", patience=3)
    model = Scripted([7, 8])  # the resumed run keeps counting from 1: two more checks exhaust the patience
    trainer = L.Trainer(max_epochs=10, limit_train_batches=2, limit_val_batches=1, enable_progress_bar=False,
                        enable_model_summary=False, logger=False, enable_checkpointing=False, callbacks=[resumed])
    trainer.fit(model, ckpt_path=path)
    assert resumed.stopped_epoch == 3 and trainer.current_epoch == 4
    assert resumed.stopping_reason == EarlyStoppingReason.PATIENCE_EXHAUSTED


def test_trainer_finds_its_early_stopping_callbacks():
    es = EarlyStopping("val_loss")
    trainer = L.Trainer(callbacks=[es], logger=False, enable_progress_bar=False)
    assert trainer.early_stopping_callback is es and trainer.early_stopping_callbacks == [es]


@pytest.mark.parametrize("kwargs, words", [
    (dict(monitor="val_loss", mode="avg"), "mode='avg'"),
    (dict(monitor=""), "monitor=''"),
    (dict(monitor="val_loss", patience=-1), "patience=-1"),
])
def test_bad_arguments(kwargs, words):
    with pytest.raises(MisconfigurationException, match=words.replace("(", r"\(")):
        EarlyStopping(**kwargs)

"""NeptuneLogger with the real neptune client: offline mode, whose operation log is read back, and debug mode,
whose run answers queries in memory."""

from __future__ import annotations

import glob
import json

import pytest

import fulmen as L
from fulmen.callbacks import ModelCheckpoint
from tests.models import LogsLosses

pytest.importorskip("neptune")
from fulmen.loggers import NeptuneLogger  # noqa: E402

# No captured output, hardware metrics, git or source files: the run holds what the Trainer logs.
QUIET = dict(capture_stdout=False, capture_stderr=False, capture_hardware_metrics=False, capture_traceback=False,
             git_ref=False, source_files=[])


class Logged(LogsLosses):
    def __init__(self, lr: float = 0.1, opt: dict | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()


def _fit(logger, tmp_path, **kwargs):
    trainer = L.Trainer(max_epochs=2, limit_train_batches=4, limit_val_batches=2, log_every_n_steps=1,
                        logger=logger, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path, **kwargs)
    trainer.fit(Logged(opt={"name": "sgd", "momentum": 0.9}))
    return trainer


def test_offline_run_holds_metrics_hyperparameters_checkpoints_and_status(tmp_path):
    logger = NeptuneLogger(mode="offline", project="team/fulmen", name="first", **QUIET)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val_loss", save_top_k=1)
    _fit(logger, tmp_path, callbacks=[checkpoint])
    logger.run.stop()
    (log,) = glob.glob(f"{tmp_path}/.neptune/offline/*/data-1.log")
    ops = [json.loads(line)["obj"] for line in open(log)]
    assigned = {"/".join(op["path"]): op.get("value") for op in ops if op["type"].startswith("Assign")}
    assert assigned["sys/name"] == "first"
    assert assigned["training/hyperparams/lr"] == 0.1 and assigned["training/hyperparams/opt/name"] == "sgd"
    assert assigned["training/status"] == "success"
    assert assigned["training/model/best_model_path"] == checkpoint.best_model_path
    assert assigned["training/model/best_model_score"] == pytest.approx(float(checkpoint.best_model_score))
    series = {}
    for op in ops:
        if op["type"] == "LogFloats":
            series.setdefault("/".join(op["path"]), []).extend((v["step"], v["value"]) for v in op["values"])
    assert [step for step, _ in series["training/train_loss"]] == list(range(8))
    assert [step for step, _ in series["training/val_loss"]] == [3, 7]
    # The checkpoint the callback keeps is uploaded; the one it deleted after epoch 1 is deleted from the run too.
    uploads = [("/".join(op["path"]), op["type"]) for op in ops if op["type"] in ("UploadFile", "DeleteAttribute")]
    kept = "training/model/checkpoints/" + checkpoint.best_model_path.rsplit("/", 1)[1].removesuffix(".ckpt")
    assert (kept, "UploadFile") in uploads
    assert [path for path, kind in uploads if kind == "UploadFile"][-1] == kept


def test_debug_run_answers_queries_and_the_version_names_the_checkpoint_folder(tmp_path):
    logger = NeptuneLogger(mode="debug", prefix="exp", **QUIET)
    trainer = _fit(logger, tmp_path)
    run = logger.experiment
    assert list(run["exp/train_loss"].fetch_values()["step"]) == list(range(8))
    assert run["exp/hyperparams/opt/momentum"].fetch() == 0.9
    assert logger.version.startswith("OFFLINE")
    assert logger.version in trainer.checkpoint_callback.dirpath
    logger.log_model_summary(trainer.lightning_module)
    assert run.exists("exp/model/summary")
    run.stop()


def test_existing_run_and_conflicting_arguments(tmp_path):
    import neptune

    run = neptune.init_run(mode="debug", **QUIET)
    logger = NeptuneLogger(run=run["nested"], prefix="")
    logger.log_metrics({"acc": 0.5}, step=1)
    assert run["nested/acc"].fetch_last() == 0.5
    with pytest.raises(ValueError, match="run=.*leave api_key, project, name"):
        NeptuneLogger(run=run, project="team/fulmen")
    run.stop()

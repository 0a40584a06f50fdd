"""ModelCheckpoint: save checkpoints during a fit, keep the best ``save_top_k`` by a monitored metric, and
``last.ckpt``.

Triggers (at most one): every ``every_n_epochs`` epochs (the default, at validation end or train epoch end),
every ``every_n_train_steps`` optimizer steps, or every ``train_time_interval``. Every file is written atomically
(``checkpoint/io.py``); an old top-k file is deleted only after the new one is on disk.
"""

from __future__ import annotations

import functools
import math
import os
import re
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Optional, Union

import torch
from torch import Tensor
from typing_extensions import override

from fulmen.callbacks.checkpoint import Checkpoint
from fulmen.checkpoint import io
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_info, rank_zero_warn

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer

_GROUP = re.compile(r"\{([^{}:]+)(:[^{}]*)?\}")


# What ModelCheckpoint records of its files; a save that fails (a full disk, a broken filesystem) leaves it as it was.
_RECORD = ("best_k_models", "best_model_path", "best_model_score", "kth_best_model_path", "kth_value",
           "current_score", "last_model_path", "_last_global_step_saved", "_last_checkpoint_saved")


def _unchanged_if_it_fails(method: Any) -> Any:
    @functools.wraps(method)
    def wrapped(self: Any, *args: Any) -> Any:
        saved = {name: getattr(self, name) for name in _RECORD}
        saved["best_k_models"] = dict(self.best_k_models)
        try:
            return method(self, *args)
        except BaseException:
            for name, value in saved.items():
                setattr(self, name, value)
            raise

    return wrapped


def _safe_part(text: str) -> str:
    """A metric's name or value as it goes into a file name: no folder separator, no NUL and no "..", so that what
    a run logs cannot place a checkpoint outside its folder ("val/loss" becomes "val_loss")."""
    text = text.replace("/", "_").replace("\\", "_").replace("\0", "")
    return text.replace("..", "_")


class ModelCheckpoint(Checkpoint):
    """Save the model periodically (and the best ones by ``monitor``), as Lightning's ModelCheckpoint does.

    Args:
        dirpath: folder of the files; default ``<logger save_dir>/<name>/version_N/checkpoints``, or
            ``<default_root_dir>/checkpoints`` without a logger. Local paths or fsspec URLs.
        filename: template such as ``"{epoch}-{val_loss:.2f}"``; default ``"{epoch}-{step}"``. With
            ``auto_insert_metric_name`` each ``{name}`` becomes ``name=<value>``.
        monitor: metric (from ``trainer.callback_metrics``) that ranks checkpoints; None keeps the latest.
        mode: "min" or "max": whether a lower or a higher ``monitor`` is better.
        save_top_k: how many to keep: -1 all, 0 none (only ``last``), k the best k (without monitor: 0, 1 or -1).
        save_last: also write ``last.ckpt`` at each save (True), or a symlink to the newest file ("link").
        save_weights_only: write only the weights and loop counters (such a file cannot resume a fit).
        every_n_train_steps: save every n optimizer steps (the triggers are mutually exclusive).
        train_time_interval: save every so much time (a ``timedelta``).
        every_n_epochs: save every n epochs.
        save_on_train_epoch_end: save at the train epoch end (True) or at validation end (False); by default at
            the train epoch end only when validation runs once per epoch or not at all.
        save_on_exception: save when the fit ends with an exception.
        enable_version_counter: add ``-v1``, ``-v2`` to a name that already exists instead of overwriting it.
        verbose: report each save.
    """

    CHECKPOINT_JOIN_CHAR = "-"
    CHECKPOINT_EQUALS_CHAR = "="
    CHECKPOINT_NAME_LAST = "last"
    FILE_EXTENSION = ".ckpt"
    STARTING_VERSION = 1
    _runs_after_module_epoch_end = True

    def __init__(
        self,
        dirpath: Optional[Union[str, os.PathLike[str]]] = None,
        filename: Optional[str] = None,
        monitor: Optional[str] = None,
        verbose: bool = False,
        save_last: Optional[Union[bool, str]] = None,
        save_top_k: int = 1,
        save_on_exception: bool = False,
        save_weights_only: bool = False,
        mode: str = "min",
        auto_insert_metric_name: bool = True,
        every_n_train_steps: Optional[int] = None,
        train_time_interval: Optional[timedelta] = None,
        every_n_epochs: Optional[int] = None,
        save_on_train_epoch_end: Optional[bool] = None,
        enable_version_counter: bool = True,
    ) -> None:
        if mode not in ("min", "max"):
            raise MisconfigurationException(f"ModelCheckpoint(mode={mode!r}) is not supported; choose 'min' or 'max'")
        if save_last not in (None, True, False, "link"):
            raise MisconfigurationException(
                f"ModelCheckpoint(save_last={save_last!r}) is not supported; pass True, False, None or 'link'")
        if not isinstance(save_top_k, int) or save_top_k < -1:
            raise MisconfigurationException(
                f"ModelCheckpoint(save_top_k={save_top_k!r}) is invalid; pass -1 (keep all), 0 (none) or k >= 1")
        if monitor is None and save_top_k not in (-1, 0, 1):
            raise MisconfigurationException(
                f"ModelCheckpoint(save_top_k={save_top_k}, monitor=None) is not a valid configuration: without a "
                "monitored metric there is no ranking to keep the top k by; set monitor= or use 0, 1 or -1")
        for name, value in (("every_n_train_steps", every_n_train_steps), ("every_n_epochs", every_n_epochs)):
            if value is not None and (not isinstance(value, int) or value < 0):
                raise MisconfigurationException(f"ModelCheckpoint({name}={value!r}) must be an int >= 0")
        if train_time_interval is not None and not isinstance(train_time_interval, timedelta):
            raise MisconfigurationException(
                f"ModelCheckpoint(train_time_interval={train_time_interval!r}) must be a datetime.timedelta")
        if every_n_train_steps is None and every_n_epochs is None and train_time_interval is None:
            every_n_epochs, every_n_train_steps = 1, 0
        every_n_epochs, every_n_train_steps = every_n_epochs or 0, every_n_train_steps or 0
        if (every_n_epochs >= 1) + (every_n_train_steps >= 1) + (train_time_interval is not None) > 1:
            raise MisconfigurationException(
                f"ModelCheckpoint got every_n_train_steps={every_n_train_steps}, every_n_epochs={every_n_epochs} "
                f"and train_time_interval={train_time_interval}; use only one of them")
        if dirpath is not None and not io.is_url(dirpath):
            dirpath = os.path.realpath(os.path.expanduser(io.local_path(dirpath)))
        self.dirpath: Optional[str] = os.fspath(dirpath) if dirpath is not None else None
        self._dirpath_given = dirpath is not None
        self.filename = filename
        self.monitor = monitor
        self.mode = mode
        self.verbose = verbose
        self.save_last = save_last
        self.save_top_k = save_top_k
        self.save_on_exception = save_on_exception
        self.save_weights_only = save_weights_only
        self.auto_insert_metric_name = auto_insert_metric_name
        self._every_n_train_steps = every_n_train_steps
        self._every_n_epochs = every_n_epochs
        self._train_time_interval = train_time_interval
        self._save_on_train_epoch_end = save_on_train_epoch_end
        self._enable_version_counter = enable_version_counter
        self.best_k_models: dict[str, Tensor] = {}
        self.kth_best_model_path = ""
        self.best_model_score: Optional[Tensor] = None
        self.best_model_path = ""
        self.last_model_path = ""
        self.current_score: Optional[Tensor] = None
        self.kth_value: Tensor = torch.tensor(math.inf if mode == "min" else -math.inf)
        self._last_global_step_saved = 0  # no checkpoint at step 0: nothing has been trained yet
        self._last_checkpoint_saved = ""
        self._last_time_checked: Optional[float] = None
        self._defer_save_until_validation = False

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(
            monitor=self.monitor, mode=self.mode, every_n_train_steps=self._every_n_train_steps,
            every_n_epochs=self._every_n_epochs, train_time_interval=self._train_time_interval)

    @property
    def every_n_epochs(self) -> int:
        return self._every_n_epochs

    # ------------------------------------------------------------------------------------------ hooks
    @override
    def setup(self, trainer: "Trainer", pl_module: Any, stage: str) -> None:
        self.dirpath = trainer.strategy.broadcast(self.resolve_dirpath(trainer))  # rank 0's log version decides
        if self.save_last == "link" and io.is_url(self.dirpath):
            raise ValueError(f"ModelCheckpoint(save_last='link') needs a local folder, got dirpath={self.dirpath!r}; "
                             "use save_last=True")
        if trainer.is_global_zero:
            io.remove_stale_temporaries(self.dirpath)  # what a save killed in an earlier run left behind
        if stage == "fit" and trainer.is_global_zero and self.save_top_k != 0 and io.listdir(self.dirpath):
            rank_zero_warn(f"Checkpoint directory {self.dirpath} exists and is not empty.")

    @override
    def on_train_start(self, trainer: "Trainer", pl_module: Any) -> None:
        self._last_time_checked = time.monotonic()

    @override
    def on_train_batch_end(self, trainer: "Trainer", pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Save every ``every_n_train_steps`` steps or ``train_time_interval``."""
        due_step = self._every_n_train_steps >= 1 and trainer.global_step % self._every_n_train_steps == 0
        due_time = False
        if self._train_time_interval is not None and self._last_time_checked is not None:
            now = time.monotonic()
            due_time = now - self._last_time_checked >= self._train_time_interval.total_seconds()
            due_time = trainer.strategy.broadcast(due_time)  # ranks must agree, or one of them waits forever
            if due_time:
                self._last_time_checked = now
        if not (due_step or due_time):
            return
        candidates = self._monitor_candidates(trainer)
        if self.monitor is not None and (self.monitor not in candidates or self._validation_follows(trainer)):
            # The monitored value comes from validation (not run yet, or about to run): save when it is fresh.
            self._defer_save_until_validation = True
            return
        if self._skip(trainer):
            return
        self._save_topk(trainer, candidates)
        self._save_last(trainer, candidates)

    @override
    def on_train_epoch_end(self, trainer: "Trainer", pl_module: Any) -> None:
        if self._skip(trainer) or not self._saves_on_train_epoch_end(trainer):
            return
        self._save_at_epoch_boundary(trainer)

    @override
    def on_validation_end(self, trainer: "Trainer", pl_module: Any) -> None:
        if self._skip(trainer) or self._saves_on_train_epoch_end(trainer):
            return
        if self._defer_save_until_validation:
            self._defer_save_until_validation = False
            candidates = self._monitor_candidates(trainer)
            self._save_topk(trainer, candidates)
            self._save_last(trainer, candidates)
            return
        self._save_at_epoch_boundary(trainer)

    @override
    def on_exception(self, trainer: "Trainer", pl_module: Any, exception: BaseException) -> None:
        if (not self.save_on_exception or trainer.fast_dev_run or trainer.sanity_checking
                or self._last_global_step_saved == trainer.global_step):
            return
        candidates = self._monitor_candidates(trainer)
        filepath = self.format_checkpoint_name(candidates)
        self._save(trainer, filepath)
        self._save_last(trainer, candidates)
        rank_zero_info(f"{type(exception).__name__} ({exception}) ended the run; saved checkpoint {filepath}")

    @override
    def on_train_end(self, trainer: "Trainer", pl_module: Any) -> None:
        if self.save_last and not self._last_checkpoint_saved and not trainer.fast_dev_run:
            self._save_last(trainer, self._monitor_candidates(trainer))

    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "monitor": self.monitor, "best_model_score": self.best_model_score,
            "best_model_path": self.best_model_path, "current_score": self.current_score, "dirpath": self.dirpath,
            "best_k_models": self.best_k_models, "kth_best_model_path": self.kth_best_model_path,
            "kth_value": self.kth_value, "last_model_path": self.last_model_path,
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved_dir = state_dict.get("dirpath", self.dirpath)
        if saved_dir == self.dirpath:
            self.best_model_score = state_dict["best_model_score"]
            self.kth_best_model_path = state_dict.get("kth_best_model_path", self.kth_best_model_path)
            self.kth_value = state_dict.get("kth_value", self.kth_value)
            self.best_k_models = dict(state_dict.get("best_k_models", self.best_k_models))
            self.last_model_path = state_dict.get("last_model_path", self.last_model_path)
            self.current_score = state_dict.get("current_score", self.current_score)
        else:
            rank_zero_warn(f"ModelCheckpoint's folder changed from {saved_dir!r} to {self.dirpath!r}: the top-k "
                           "record and last_model_path are not restored, only best_model_path")
        self.best_model_path = state_dict["best_model_path"]

    # ------------------------------------------------------------------------------------------ decisions
    def _skip(self, trainer: "Trainer") -> bool:
        return (bool(trainer.fast_dev_run) or trainer.state.fn != "fit" or trainer.sanity_checking
                or self._last_global_step_saved == trainer.global_step)

    def _saves_on_train_epoch_end(self, trainer: "Trainer") -> bool:
        if self._save_on_train_epoch_end is not None:
            return self._save_on_train_epoch_end
        if trainer.state.val_time_interval is not None or trainer.check_val_every_n_epoch != 1:
            return False
        if sum(trainer.num_val_batches) == 0 or not trainer.state.val_enabled:
            return True  # no validation: the epoch end is the only boundary
        return trainer.val_check_interval == 1.0

    def _validation_follows(self, trainer: "Trainer") -> bool:
        """Whether validation runs right after this (last) batch, so the monitored value is about to change."""
        if self._saves_on_train_epoch_end(trainer) or not trainer.is_last_batch or not trainer.state.val_enabled:
            return False
        n = trainer.check_val_every_n_epoch
        return sum(trainer.num_val_batches) > 0 and (n is None or (trainer.current_epoch + 1) % n == 0)

    def _save_at_epoch_boundary(self, trainer: "Trainer") -> None:
        candidates = self._monitor_candidates(trainer)
        if self._every_n_epochs >= 1 and (trainer.current_epoch + 1) % self._every_n_epochs == 0:
            self._save_topk(trainer, candidates)
        if self._last_global_step_saved == trainer.global_step or (
                self.save_last == "link" and self._last_checkpoint_saved):
            self._save_last(trainer, candidates)

    def _monitor_candidates(self, trainer: "Trainer") -> dict[str, Tensor]:
        candidates = {k: v.detach().clone() if isinstance(v, Tensor) else v
                      for k, v in trainer.callback_metrics.items()}
        epoch, step = candidates.get("epoch"), candidates.get("step")
        candidates["epoch"] = epoch.int() if isinstance(epoch, Tensor) else torch.tensor(trainer.current_epoch)
        candidates["step"] = step.int() if isinstance(step, Tensor) else torch.tensor(trainer.global_step)
        return candidates

    def _missing(self, trainer: "Trainer", name: str, candidates: dict[str, Tensor], what: str) -> None:
        """A metric the configuration names is not in ``candidates``: an error once validation has run (or when
        there is none, so it can never come); before that, Lightning's behaviour (warn, or format it as 0)."""
        logged = sorted(k for k in candidates if k not in ("epoch", "step"))
        message = (f"ModelCheckpoint({what}) names {name!r}, which was not logged; logged metrics: {logged}. "
                   f"Log it with self.log({name!r}, value), or change {what.split('=')[0]}")
        if trainer.state.val_runs > 0 or not trainer.state.val_enabled:
            raise MisconfigurationException(message)
        rank_zero_warn(message)

    # ------------------------------------------------------------------------------------------ saving
    @_unchanged_if_it_fails
    def _save_topk(self, trainer: "Trainer", candidates: dict[str, Tensor]) -> None:
        if self.save_top_k == 0:
            return
        if self.monitor is None:
            filepath = self._free_name(candidates, trainer, replacing=self.best_model_path)
            previous, self.best_model_path = self.best_model_path, filepath
            self._save(trainer, filepath)
            if self.save_top_k == 1 and previous and self._may_remove(trainer, previous, filepath):
                trainer.strategy.remove_checkpoint(previous)
            return
        current = candidates.get(self.monitor)
        if current is None:
            self._missing(trainer, self.monitor, candidates, f"monitor={self.monitor!r}")
            return
        if self._ranks_in_top_k(current):
            self._update_best_and_save(current, trainer, candidates)
        elif self.verbose:
            rank_zero_info(f"Epoch {int(candidates['epoch'])}, global step {int(candidates['step'])}: "
                           f"{self.monitor!r} was not in top {self.save_top_k}")

    def _ranks_in_top_k(self, current: Tensor) -> bool:
        if self.save_top_k == -1 or len(self.best_k_models) < self.save_top_k:
            return True
        kth = self.best_k_models[self.kth_best_model_path]
        better = current < kth if self.mode == "min" else current > kth
        return bool(better)

    def _update_best_and_save(self, current: Tensor, trainer: "Trainer", candidates: dict[str, Tensor]) -> None:
        k = len(self.best_k_models) + 1 if self.save_top_k == -1 else self.save_top_k
        dropped = None
        if len(self.best_k_models) == k:
            dropped = self.kth_best_model_path
            self.best_k_models.pop(dropped)
        if torch.isnan(current):  # a NaN score ranks worst
            current = torch.tensor(math.inf if self.mode == "min" else -math.inf, device=current.device)
        filepath = self._free_name(candidates, trainer, replacing=dropped)
        self.current_score = current
        self.best_k_models[filepath] = current
        if len(self.best_k_models) == k:
            worst = max if self.mode == "min" else min
            self.kth_best_model_path = worst(self.best_k_models, key=lambda p: float(self.best_k_models[p]))
            self.kth_value = self.best_k_models[self.kth_best_model_path]
        best = min if self.mode == "min" else max
        self.best_model_path = best(self.best_k_models, key=lambda p: float(self.best_k_models[p]))
        self.best_model_score = self.best_k_models[self.best_model_path]
        if self.verbose:
            rank_zero_info(f"Epoch {int(candidates['epoch'])}, global step {int(candidates['step'])}: "
                           f"{self.monitor!r} reached {float(current):0.5f} (best {float(self.best_model_score):0.5f}),"
                           f" saving model to {filepath!r} as top {k}")
        self._save(trainer, filepath)
        # Only now, with the new file durable, does the one that left the top k go.
        if dropped and self._may_remove(trainer, dropped, filepath):
            trainer.strategy.remove_checkpoint(dropped)

    @_unchanged_if_it_fails
    def _save_last(self, trainer: "Trainer", candidates: dict[str, Tensor]) -> None:
        if not self.save_last:
            return
        filepath = self.format_checkpoint_name(candidates, self.CHECKPOINT_NAME_LAST)
        if self._enable_version_counter:
            version = self.STARTING_VERSION
            while io.exists(filepath) and filepath != self.last_model_path:
                filepath = self.format_checkpoint_name(candidates, self.CHECKPOINT_NAME_LAST, ver=version)
                version += 1
            filepath = trainer.strategy.broadcast(filepath)
        previous, self.last_model_path = self.last_model_path, filepath
        if self.save_last == "link" and self._last_checkpoint_saved and self.save_top_k != 0:
            self._link(trainer, self._last_checkpoint_saved, filepath)
        else:
            self._save(trainer, filepath)
        if previous and self._may_remove(trainer, previous, filepath):
            trainer.strategy.remove_checkpoint(previous)

    def _save(self, trainer: "Trainer", filepath: str) -> None:
        trainer.save_checkpoint(filepath, self.save_weights_only)
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(self)

    @staticmethod
    def _link(trainer: "Trainer", target: str, linkpath: str) -> None:
        """Point ``linkpath`` at ``target`` with a relative symlink, replaced atomically, once ``target`` is written
        (a background writer may still be at it: a link must never point at a file that is not there, so the
        checkpoint IO moves it after the write)."""
        if trainer.is_global_zero and os.path.abspath(target) != os.path.abspath(linkpath):
            def link() -> None:
                tmp = os.path.join(os.path.dirname(linkpath), f"{io.TMP_PREFIX}{os.path.basename(linkpath)}")
                if os.path.lexists(tmp):
                    os.remove(tmp)
                os.symlink(os.path.relpath(target, os.path.dirname(linkpath)), tmp)
                os.replace(tmp, linkpath)

            trainer.strategy.checkpoint_io.after_write(link)
        trainer.strategy.barrier()

    def _may_remove(self, trainer: "Trainer", previous: str, current: str) -> bool:
        """Delete ``previous`` only if it is another file, inside this callback's folder, and not the checkpoint
        the run resumed from."""
        if previous == current or not trainer.is_global_zero:  # one process deletes, the one that writes
            return False
        if io.is_url(previous):
            return True
        resumed = trainer.ckpt_path
        if resumed is not None and not io.is_url(resumed) and os.path.abspath(resumed) == os.path.abspath(previous):
            return False
        folder = os.path.abspath(self.dirpath or "")
        return os.path.abspath(previous).startswith(folder + os.sep)

    # ------------------------------------------------------------------------------------------ names
    def _free_name(self, candidates: dict[str, Tensor], trainer: "Trainer", replacing: Optional[str] = None) -> str:
        filepath = self.format_checkpoint_name(candidates, trainer=trainer)
        if self._enable_version_counter:
            version = self.STARTING_VERSION
            while io.exists(filepath) and filepath != replacing:
                filepath = self.format_checkpoint_name(candidates, ver=version, trainer=trainer)
                version += 1
        return trainer.strategy.broadcast(filepath)  # rank 0 saw the folder as it is: every rank takes its name

    def format_checkpoint_name(self, metrics: dict[str, Any], filename: Optional[str] = None,
                               ver: Optional[int] = None, prefix: Optional[str] = None,
                               trainer: Optional["Trainer"] = None) -> str:
        """The path for a checkpoint with ``metrics``: the template filled in (``{epoch}`` -> ``epoch=3``), the
        ``-v<ver>`` suffix, ``.ckpt``, inside ``dirpath``."""
        template = filename or self.filename or "{epoch}" + self.CHECKPOINT_JOIN_CHAR + "{step}"

        def fill(match: re.Match[str]) -> str:
            name, spec = match.group(1), (match.group(2) or ":")[1:]
            value = metrics.get(name)
            if value is None:
                if trainer is not None:
                    self._missing(trainer, name, metrics, f"filename={template!r}")
                value = 0
            if isinstance(value, Tensor):
                value = value.item()
            text = _safe_part(format(value, spec))
            return f"{_safe_part(name)}{self.CHECKPOINT_EQUALS_CHAR}{text}" if self.auto_insert_metric_name else text

        name = _GROUP.sub(fill, template)
        if prefix:
            name = self.CHECKPOINT_JOIN_CHAR.join([prefix, name])
        if ver is not None:
            name = self.CHECKPOINT_JOIN_CHAR.join([name, f"v{ver}"])
        name += self.FILE_EXTENSION
        return f"{self.dirpath.rstrip('/')}/{name}" if self.dirpath and io.is_url(self.dirpath) else (
            os.path.join(self.dirpath, name) if self.dirpath else name)

    def resolve_dirpath(self, trainer: "Trainer") -> str:
        """``dirpath`` if given, else the first logger's version folder + ``checkpoints``, else
        ``default_root_dir/checkpoints``."""
        if self._dirpath_given and self.dirpath is not None:
            return self.dirpath
        if trainer.loggers:
            logger = trainer.loggers[0]
            save_dir = logger.save_dir if logger.save_dir is not None else trainer.default_root_dir
            version = logger.version
            version = version if isinstance(version, str) else f"version_{version}"
            return os.path.join(save_dir, str(logger.name), version, "checkpoints")
        return os.path.join(trainer.default_root_dir, "checkpoints")

    def last_checkpoints(self, trainer: "Trainer") -> list[str]:
        """Every complete checkpoint in this callback's folder (for ``ckpt_path="last"``)."""
        folder = self.resolve_dirpath(trainer)
        return [p for p in io.listdir(folder)
                if p.endswith(self.FILE_EXTENSION) and not os.path.basename(p).startswith(io.TMP_PREFIX)]

    def to_yaml(self, filepath: Optional[Union[str, os.PathLike[str]]] = None) -> None:
        """Write ``best_k_models`` (path: score) to ``dirpath/best_k_models.yaml``."""
        from fulmen.core.saving import to_yaml

        target = os.fspath(filepath) if filepath is not None else os.path.join(self.dirpath or ".",
                                                                               "best_k_models.yaml")
        with open(target, "w") as f:
            f.write(to_yaml({k: float(v) for k, v in self.best_k_models.items()}))

"""The ``self.log`` store: lazy, on-device aggregation of logged values.

A logged value stays a detached tensor on its device. Epoch aggregation is a running tensor (sum weighted by batch
size, max, min) updated in place, so logging adds no host-device synchronisation to a step. Values become Python
numbers only when someone reads them: a logger flush (every ``log_every_n_steps``), the progress bar (a few times a
second at most), or user code reading ``trainer.callback_metrics``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Optional, Union

import torch
from torch import Tensor

from fulmen.core.hooks import LOG_OPTIONS, TRAINING_STEP_HOOKS
from fulmen.utilities.apply_to_collection import batch_size_of
from fulmen.utilities.metric_state import is_metric, submodule
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer

_REDUCE_NAMES = {"mean": "mean", "avg": "mean", "sum": "sum", "max": "max", "min": "min"}
_REDUCE_FNS: dict[Any, str] = {torch.mean: "mean", torch.sum: "sum", torch.max: "max", torch.min: "min", sum: "sum",
                               max: "max", min: "min"}


def parse_reduce_fx(reduce_fx: Union[str, Callable[..., Any]]) -> str:
    """'mean' / 'avg' / 'sum' / 'max' / 'min' or torch.mean/sum/max/min -> the canonical name."""
    if isinstance(reduce_fx, str):
        name = _REDUCE_NAMES.get(reduce_fx.lower())
    else:
        name = _REDUCE_FNS.get(reduce_fx)
    if name is None:
        raise MisconfigurationException(
            f"self.log(reduce_fx={reduce_fx!r}) is not supported; use 'mean', 'sum', 'max', 'min' "
            "or torch.mean / torch.sum / torch.max / torch.min"
        )
    return name


class LogMeta(NamedTuple):
    """The options of one logged name in one hook; logging it again with other options is an error."""

    fx: str
    name: str
    prog_bar: bool
    logger: bool
    on_step: bool
    on_epoch: bool
    reduce: str
    sync_dist: bool
    sync_dist_group: Any
    add_dataloader_idx: bool
    dataloader_idx: Optional[int]
    metric_attribute: Optional[str]
    rank_zero_only: bool

    @property
    def forked(self) -> bool:
        return self.on_step and self.on_epoch

    def names(self, on_step: bool) -> tuple[str, str]:
        """(plain name, name with _step/_epoch when both are logged), with the dataloader suffix when it applies."""
        name = self.name
        forked = f"{name}_{'step' if on_step else 'epoch'}" if self.forked else name
        if self.add_dataloader_idx and self.dataloader_idx is not None:
            suffix = f"/dataloader_idx_{self.dataloader_idx}"
            return name + suffix, forked + suffix
        return name, forked


class Entry:
    """One logged name: its latest step value and its running epoch aggregate (all tensors, on the device)."""

    __slots__ = ("meta", "value", "total", "count", "metric", "computed", "call", "running_mean")

    def __init__(self, meta: LogMeta, metric: Any = None, call: tuple[Any, ...] = ()) -> None:
        self.meta = meta
        self.metric = metric
        # The arguments of the first call, (prog_bar, logger, on_step, on_epoch, dataloader_idx): a later call with
        # the same ones needs no check.
        self.call = call
        # The usual entry: a batch-weighted running mean kept on the device, no collective per step. Its updates
        # take the short road in log_value (self.log is called many times a step).
        self.running_mean = meta.on_epoch and meta.reduce == "mean" and metric is None and not (
            meta.sync_dist and meta.on_step)
        self.reset()

    def reset(self) -> None:
        self.value: Optional[Tensor] = None
        self.total: Optional[Tensor] = None  # sum (weighted by batch size for mean), or the running max/min
        self.count = 0  # samples seen, a Python int: batch sizes are known on the host
        self.computed: Optional[Tensor] = None

    def update(self, value: Tensor, batch_size: int) -> None:
        # A step value logged with sync_dist is reduced across processes now, as in Lightning (a collective that
        # the user asked for; the epoch aggregate below stays local until the epoch ends).
        self.value = _sync(value, self.meta.reduce, self.meta.sync_dist_group, average=True) if (
            self.meta.sync_dist and self.meta.on_step) else value
        self.computed = None
        if not self.meta.on_epoch or self.metric is not None:
            return
        reduce = self.meta.reduce
        if self.total is None:
            acc = value.to(torch.float64 if value.dtype == torch.float64 else torch.float32)
            self.total = acc * batch_size if reduce == "mean" else acc.clone()
        elif reduce == "mean":
            self.total.add_(value, alpha=batch_size)
        elif reduce == "sum":
            self.total.add_(value)
        elif reduce == "max":
            torch.maximum(self.total, value, out=self.total)
        else:
            torch.minimum(self.total, value, out=self.total)
        self.count += batch_size

    def step_value(self) -> Optional[Tensor]:
        return self.value

    def epoch_value(self) -> Optional[Tensor]:
        if self.computed is not None:
            return self.computed
        if self.metric is not None:
            if self.count == 0:
                return None
            self.computed = self.metric.compute()
            return self.computed
        if self.total is None:
            return None
        total = self.total
        if self.meta.sync_dist:
            total = _sync(total, self.meta.reduce, self.meta.sync_dist_group)
            count = _sync(torch.tensor(float(self.count), device=total.device), "sum", self.meta.sync_dist_group)
        else:
            count = self.count
        self.computed = total / count if self.meta.reduce == "mean" else total
        return self.computed


def _sync(value: Tensor, reduce: str, group: Any, average: bool = False) -> Tensor:
    """All-reduce ``value`` across processes when a process group is running (a collective: all ranks must call);
    with ``average``, a "mean" is divided by the number of processes."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return value
    op = {"mean": torch.distributed.ReduceOp.SUM, "sum": torch.distributed.ReduceOp.SUM,
          "max": torch.distributed.ReduceOp.MAX, "min": torch.distributed.ReduceOp.MIN}[reduce]
    value = value.detach().clone()
    torch.distributed.all_reduce(value, op=op, group=group)
    if average and reduce == "mean":
        value = value / torch.distributed.get_world_size(group)
    return value


class Metrics(NamedTuple):
    """Metric views, as Lightning splits them: for callbacks, for loggers, for the progress bar."""

    callback: dict[str, Tensor]
    log: dict[str, Tensor]
    pbar: dict[str, Tensor]


_NOT_SIZED = object()


class MetricStore:
    """The values logged during one loop (training, validation or test) of a run.

    ``batch`` and ``dataloader_idx`` are set by the loop before each batch; ``batch_size`` is inferred from the batch
    the first time an epoch mean needs it.
    """

    def __init__(self, training: bool) -> None:
        self.training = training
        self.entries: dict[tuple[str, str, Optional[int]], Entry] = {}
        self.batch: Any = None  # the training loop sets only this per batch; the size is inferred lazily
        self._sized: Any = _NOT_SIZED  # the batch that batch_size was inferred from
        self.batch_size: Optional[int] = None
        self.dataloader_idx: Optional[int] = None
        self.epoch_done = False  # False: the views show step values; True: epoch aggregates

    def reset(self) -> None:
        for entry in self.entries.values():
            entry.reset()
            if entry.metric is not None:
                entry.metric.reset()
        self.epoch_done = False

    def state_dict(self) -> list[dict[str, Any]]:
        """The latest values and running epoch aggregates, as plain data, so that a run resumed in the middle of an
        epoch ends it with the same epoch values. A torchmetrics entry keeps only its options and count: the Metric's
        own state is saved with the module's metrics (``metric_states``)."""
        out = []
        for entry in self.entries.values():
            meta = dict(entry.meta._asdict(), sync_dist_group=None)  # a process group cannot be saved
            value = entry.value if entry.metric is None else None
            out.append({"meta": meta, "value": value, "total": entry.total, "count": entry.count,
                        "metric": entry.metric is not None})
        return out

    def load_state_dict(self, saved: list[dict[str, Any]], device: Optional[torch.device] = None,
                        module: Any = None) -> None:
        """Restore what ``state_dict`` saved; torchmetrics entries are bound again to ``module``'s Metric of the
        same attribute name (an entry whose Metric the module no longer has is dropped)."""
        for item in saved:
            meta = LogMeta(**item["meta"])
            metric = None
            if item.get("metric"):
                metric = submodule(module, meta.metric_attribute)
                if not is_metric(metric):
                    continue
            entry = Entry(meta, metric)
            entry.value, entry.total, entry.count = (
                t.to(device) if isinstance(t, Tensor) and device is not None else t
                for t in (item["value"], item["total"], item["count"]))
            key = (meta.fx, meta.name, meta.dataloader_idx if meta.add_dataloader_idx else None)
            self.entries[key] = entry

    def start_batch(self, batch: Any, dataloader_idx: Optional[int] = None) -> None:
        """An evaluation batch begins (the training loop only assigns ``batch``)."""
        self.batch = batch
        self.dataloader_idx = dataloader_idx
        self.epoch_done = False

    def inferred_batch_size(self) -> int:
        if self._sized is not self.batch:
            try:
                self.batch_size = batch_size_of(self.batch)
            except ValueError:
                self.batch_size = 1
            self._sized = self.batch
        return self.batch_size  # type: ignore[return-value]

    def metrics(self) -> Metrics:
        """The current views: step values during an epoch, epoch aggregates once ``epoch_done`` is set."""
        on_step = not self.epoch_done
        out = Metrics({}, {}, {})
        for entry in self.entries.values():
            meta = entry.meta
            if self.dataloader_idx is not None and meta.dataloader_idx not in (None, self.dataloader_idx):
                continue
            if on_step:
                value = entry.step_value() if meta.on_step else None
            else:
                value = entry.epoch_value() if meta.on_epoch else None
            if value is None:
                continue
            name, forked = meta.names(on_step)
            if meta.logger:
                out.log[forked] = value
            # Outside training, callbacks only see epoch-level values (what a monitor such as val_loss means).
            if self.training or (meta.on_epoch and not on_step):
                out.callback[name] = value
                out.callback[forked] = value
            if meta.prog_bar:
                out.pbar[forked] = value
        return out


def log_value(module: Any, store: Optional[MetricStore], name: str, value: Any, prog_bar: bool, logger: Optional[bool],
              on_step: Optional[bool], on_epoch: Optional[bool], reduce_fx: Any, enable_graph: bool, sync_dist: bool,
              sync_dist_group: Any, add_dataloader_idx: bool, batch_size: Optional[int],
              metric_attribute: Optional[str], rank_zero_only: bool) -> None:
    """The body of ``LightningModule.log``: validate once per (hook, name), then store the value."""
    fx = module._current_fx_name
    if fx is None:
        raise MisconfigurationException(
            f"self.log({name!r}) was called outside the Trainer's hooks; log from training_step, validation_step, "
            "test_step or a hook the Trainer calls"
        )
    if store is None:
        raise MisconfigurationException(cannot_log(fx))
    dl_idx = store.dataloader_idx
    # Without the dataloader suffix, every loader logs into one entry (and may not, as its loader differs below).
    key = (fx, name, dl_idx if add_dataloader_idx else None)
    entry = store.entries.get(key)
    if entry is None:  # first time in this hook: check everything once
        metric = value if is_metric(value) else None
        meta = _validate(module, fx, name, value, prog_bar, logger, on_step, on_epoch, reduce_fx, sync_dist,
                         sync_dist_group, add_dataloader_idx, dl_idx, metric_attribute, rank_zero_only, metric)
        entry = store.entries[key] = Entry(meta, metric, (prog_bar, logger, on_step, on_epoch, dl_idx))
    elif (prog_bar, logger, on_step, on_epoch, dl_idx) != entry.call:  # not as first called: compare the options
        meta = entry.meta
        if (prog_bar != meta.prog_bar or (logger is not None and logger != meta.logger)
                or (on_step is not None and on_step != meta.on_step)
                or (on_epoch is not None and on_epoch != meta.on_epoch) or dl_idx != meta.dataloader_idx):
            raise MisconfigurationException(
                f"You called self.log({name!r}, ...) twice in `{fx}` with different arguments (or from two "
                "dataloaders with add_dataloader_idx=False); log it with the same prog_bar, logger, on_step and "
                "on_epoch every time, or use another name per dataloader"
            )
        entry.call = (prog_bar, logger, on_step, on_epoch, dl_idx)  # these agree with the options: no check again
    metric = entry.metric
    if metric is not None:
        # forward() leaves the batch value in _forward_cache; after a bare update() there is only the epoch value.
        cache = getattr(metric, "_forward_cache", None)
        entry.value = cache.detach() if isinstance(cache, Tensor) else None
        entry.computed = None
        entry.count += 1
        return
    if isinstance(value, Tensor):
        tensor = value if enable_graph else value.detach()
        if tensor.ndim or not tensor.is_floating_point():  # a 0-dim float tensor (the usual loss) skips both
            if tensor.numel() != 1:
                raise ValueError(
                    f"self.log({name!r}, value) in `{fx}` got a tensor of shape {tuple(value.shape)}; log a scalar: "
                    "reduce it first (value.mean()) or log each element under its own name"
                )
            tensor = tensor.reshape(())
            if not tensor.is_floating_point():
                tensor = tensor.float()
    else:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            kind = type(value).__name__
            raise ValueError(
                f"self.log({name!r}, value) in `{fx}` got a {kind}; log a number, a scalar tensor or a "
                "torchmetrics Metric (strings and other objects go to the logger directly: self.logger.experiment)"
            )
        tensor = torch.tensor(float(value), device=module.device)
    if entry.running_mean:
        if batch_size is None:
            batch_size = store.inferred_batch_size()
        total = entry.total
        if total is not None:  # the short road of Entry.update, for the usual entry
            entry.value = tensor
            entry.computed = None
            total.add_(tensor, alpha=batch_size)
            entry.count += batch_size
            return
    elif entry.meta.on_epoch and entry.meta.reduce == "mean":
        if batch_size is None:
            batch_size = store.inferred_batch_size()
    else:
        batch_size = batch_size or 1
    entry.update(tensor, batch_size)


# Why a hook that may not log may not, and what to do instead, by the kind of hook.
_WHERE_INSTEAD = (
    (("predict_step", "on_predict"),
     "predict hooks do not log. Return the values from predict_step, or write them with a BasePredictionWriter "
     "callback"),
    (("configure_optimizers", "configure_model", "configure_callbacks", "configure_sharded_model", "setup",
      "prepare_data", "on_fit_start"),
     "it runs once while the run is set up, before there is a step to log at. Record constants with "
     "self.save_hyperparameters() (or self.logger.log_hyperparams), or log the value from training_step or "
     "on_train_start"),
    (("teardown", "on_fit_end", "on_train_end", "on_validation_end", "on_test_end", "on_exception"),
     "the stage's logging has ended. Log the value in the matching *_epoch_end hook, or write it to the logger "
     "directly (self.logger.log_metrics({...}, step=self.global_step))"),
    (("on_save_checkpoint", "on_load_checkpoint", "state_dict", "load_state_dict"),
     "checkpoint hooks run outside the steps. Store the value in the checkpoint dict, or write it to the logger "
     "directly (self.logger.log_metrics)"),
    (("_dataloader", "transfer_batch_to_device", "on_before_batch_transfer", "on_after_batch_transfer",
      "lr_scheduler_step", "on_validation_model", "on_test_model", "on_predict_model"),
     "the loops call it outside the steps they log for. Log the value from the step that uses it (training_step, "
     "validation_step or test_step)"),
)


def cannot_log(fx: str) -> str:
    """The error for ``self.log`` inside hook ``fx``, which may not log: why, and where to log instead."""
    for names, why in _WHERE_INSTEAD:
        if any(fx == n or fx.startswith(n) or fx.endswith(n) for n in names):
            return f"You can't self.log() inside `{fx}`: {why}"
    return (f"You can't self.log() inside `{fx}`. Log from a step or a *_start / *_epoch_end hook of training, "
            "validation or test; for anything else write to the logger directly (self.logger.experiment)")


def _validate(module: Any, fx: str, name: str, value: Any, prog_bar: bool, logger: Optional[bool],
              on_step: Optional[bool], on_epoch: Optional[bool], reduce_fx: Any, sync_dist: bool,
              sync_dist_group: Any, add_dataloader_idx: bool, dataloader_idx: Optional[int],
              metric_attribute: Optional[str], rank_zero_only: bool, metric: Any) -> LogMeta:
    if fx not in LOG_OPTIONS:
        raise MisconfigurationException(cannot_log(fx))
    options = LOG_OPTIONS[fx]
    assert options is not None
    if not isinstance(name, str):
        raise TypeError(f"self.log(name={name!r}): the name must be a str")
    if add_dataloader_idx and "/dataloader_idx_" in name:
        raise MisconfigurationException(
            f"self.log({name!r}): the name must not contain '/dataloader_idx_' while add_dataloader_idx=True, "
            "as the Trainer adds that suffix; drop it from the name or pass add_dataloader_idx=False"
        )
    if isinstance(value, dict):
        raise ValueError(f"self.log({name!r}) got a dict; use self.log_dict for several values (nested dicts are "
                         "not supported)")
    on_step = options.default_on_step if on_step is None else on_step
    on_epoch = options.default_on_epoch if on_epoch is None else on_epoch
    if on_step not in options.allowed_on_step or on_epoch not in options.allowed_on_epoch:
        raise MisconfigurationException(
            f"self.log({name!r}, on_step={on_step}, on_epoch={on_epoch}) is not allowed in `{fx}`; there "
            f"on_step may be {options.allowed_on_step} and on_epoch {options.allowed_on_epoch}"
        )
    if not on_step and not on_epoch:
        raise MisconfigurationException(
            f"self.log({name!r}) in `{fx}` with on_step=False and on_epoch=False would log nothing; set one to True"
        )
    reduce = parse_reduce_fx(reduce_fx)
    if metric is not None:
        if metric_attribute is None:
            metric_attribute = next((n for n, m in module.named_modules() if m is metric), None)
            if metric_attribute is None:
                raise MisconfigurationException(
                    f"self.log({name!r}, metric) got a torchmetrics Metric that is not an attribute of the module; "
                    "assign it in __init__ (self.acc = Accuracy(...)) or pass metric_attribute='<attribute name>'"
                )
    return LogMeta(fx, name, bool(prog_bar), True if logger is None else bool(logger), bool(on_step), bool(on_epoch),
                   reduce, bool(sync_dist), sync_dist_group, bool(add_dataloader_idx), dataloader_idx,
                   metric_attribute, bool(rank_zero_only))


def _scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    # The one place logged tensors become Python numbers: a host-device sync, done only when a consumer reads.
    return {k: v.item() if isinstance(v, Tensor) else v for k, v in metrics.items()}


class MetricViews:
    """The Trainer's ``callback_metrics``, ``logged_metrics`` and ``progress_bar_metrics``, and the logger calls.

    Each view is a persistent dict, updated from the active store when read and at the end of each epoch, so
    that values survive the store's reset and nothing is computed in the step unless someone asks.
    """

    def __init__(self, trainer: "Trainer") -> None:
        self.trainer = trainer
        self.callback: dict[str, Tensor] = {}
        self.logged: dict[str, Tensor] = {}
        self.pbar: dict[str, Tensor] = {}
        self.nonfinite_warned = False  # once per run

    def _update(self, metrics: Metrics) -> Metrics:
        self.callback.update(metrics.callback)
        self.logged.update(metrics.log)
        self.pbar.update(metrics.pbar)
        return metrics

    def refresh(self) -> None:
        store = self.trainer._results
        if store is not None:
            self._update(store.metrics())

    def callback_metrics(self) -> dict[str, Tensor]:
        self.refresh()
        return self.callback

    def logged_metrics(self) -> dict[str, Tensor]:
        self.refresh()
        return self.logged

    def progress_bar_metrics(self) -> dict[str, Any]:
        self.refresh()
        scalars = _scalars(self.pbar)
        self._warn_if_nonfinite(scalars)
        return scalars

    def _warn_if_nonfinite(self, scalars: dict[str, Any]) -> None:
        """Warn once per run when a value logged from a training step, just brought to the host for the progress
        bar or a logger (never read for this alone: no sync is added), is NaN or infinite."""
        if self.nonfinite_warned or all(not isinstance(v, float) or math.isfinite(v) for v in scalars.values()):
            return
        store = self.trainer._train_store
        if self.trainer._results is not store:
            return  # a validation's values, or a run that does not train
        step_names = {entry.meta.names(on_step=True)[1] for entry in store.entries.values()
                      if entry.meta.fx in TRAINING_STEP_HOOKS}
        bad = [k for k, v in scalars.items() if k in step_names and isinstance(v, float) and not math.isfinite(v)]
        if not bad:
            return
        self.nonfinite_warned = True
        trainer = self.trainer
        rank_zero_warn(
            f"The training value {bad[0]!r} logged at global step {trainer.global_step} (epoch "
            f"{trainer.current_epoch}, batch {trainer.state.batch_idx}) is non-finite ({scalars[bad[0]]}): a NaN or "
            "infinite loss makes the weights NaN from the next optimizer step on. Look for NaN or inf in the input "
            "batches or a too high learning rate; Trainer(detect_anomaly=True) names the operation that made it, "
            "and Trainer(skip_nonfinite=True) skips such batches"
        )

    def drop_all(self) -> None:
        """Forget everything (after the sanity check, and at the start of each run)."""
        self.nonfinite_warned = False
        self.callback, self.logged, self.pbar = {}, {}, {}
        for store in self.trainer._stores():
            store.reset()

    def end_epoch(self, store: MetricStore) -> None:
        """Keep the last step values, then switch the store's views to epoch aggregates."""
        self._update(store.metrics())
        store.epoch_done = True

    def fold(self, store: MetricStore) -> Metrics:
        return self._update(store.metrics())

    def send(self, metrics: dict[str, Any], step: Optional[int] = None, add_epoch: bool = True) -> None:
        """Hand ``metrics`` to every logger at x-axis ``step`` (by default the optimizer-window count), with the
        current epoch added under "epoch" (as Lightning does for training and epoch-end values)."""
        loggers = self.trainer.loggers
        if not loggers or not metrics:
            return
        scalars = _scalars(metrics)
        self._warn_if_nonfinite(scalars)
        if step is None:
            step_metric = scalars.pop("step", None)
            step = int(step_metric) if step_metric is not None else self.trainer.state.batches_that_stepped
        if add_epoch:
            scalars.setdefault("epoch", self.trainer.current_epoch)
        for logger in loggers:
            logger.log_metrics(metrics=scalars, step=step)
            logger.save()

    def log_metrics(self, metrics: dict[str, Any], step: Optional[int] = None) -> None:
        """Values a callback computed itself (ThroughputMonitor): into ``logged_metrics`` and to every logger, at
        ``step`` or, by default, at the training step axis with the epoch added (Lightning's
        ``trainer._logger_connector.log_metrics``)."""
        if not self.trainer.loggers or not metrics:
            return
        self.logged.update(metrics)
        self.send(metrics, step, add_epoch=step is None)

    def log_step(self, store: MetricStore, step: int) -> None:
        if self.trainer.loggers:
            self.send(self._update(store.metrics()).log, step)

    def log_epoch_end(self, store: MetricStore, step: int) -> None:
        if self.trainer.loggers:
            self.send(store.metrics().log, step)

    def log_eval_step(self, store: MetricStore, step: int) -> None:
        """Step-level eval values, at the loader's running batch count (which goes on across the runs of a fit)."""
        if self.trainer.loggers:
            metrics = store.metrics().log
            if metrics:
                self.send(metrics, step, add_epoch=False)

    def loader_epoch_metrics(self, store: MetricStore, sanity: bool) -> dict[str, Tensor]:
        """Epoch metrics of the loader that just finished (the store's dataloader_idx selects it)."""
        metrics = store.metrics()
        if not sanity:
            self._update(metrics)
        return metrics.log

    def eval_end(self, store: MetricStore, per_loader: list[dict[str, Tensor]], sanity: bool) -> list[dict[str, Any]]:
        """Each loader's epoch metrics plus the loader-independent ones, as floats; also sent to the loggers."""
        metrics = store.metrics()
        if sanity:
            return []
        self._update(metrics)
        common = {}
        for entry in store.entries.values():
            if entry.meta.dataloader_idx is None and entry.meta.logger and entry.meta.on_epoch:
                _, forked = entry.meta.names(on_step=False)
                if forked in metrics.log:
                    common[forked] = metrics.log[forked]
        everything: dict[str, Tensor] = {}
        for loader_metrics in per_loader:
            everything.update(loader_metrics)
        everything.update(common)
        self.send(everything)
        return [_scalars({**loader_metrics, **common}) for loader_metrics in per_loader]

"""Preemption: on SIGTERM (and SIGUSR1 under SLURM) finish the current step, save a checkpoint that resumes
exactly, and exit with a message that says how to continue.

The signal handler only records the signal: no I/O, no collective, nothing that can deadlock or leave a half-written
file. The loops look at that record at batch boundaries (one attribute read) and call ``stop_for_signal``:

    training batch done      save with the batch finished (phase ``batch_end_done``): resume starts at the next batch
    validation batch (fit)   abandon the validation; save as at the end of the batch that started it (``batch_end``,
                             with the random states from before the validation): resume runs the validation again
    epoch boundary           save between epochs
    validate/test/predict    nothing to save: stop after the batch

Where the file goes: under SLURM, ``<default_root_dir>/hpc_ckpt_<N+1>.ckpt`` (a requeued job finds it by itself, as in
Lightning), and SIGUSR1 also requeues the job with ``scontrol requeue``. Elsewhere, ``preempted.ckpt`` in the first
ModelCheckpoint's folder (or ``<default_root_dir>/checkpoints``), which ``fit(ckpt_path="last")`` picks up.

Across several processes every rank must stop at the same batch, though a signal may reach one rank only (or
each at a different moment). ``SignalAgreement`` settles it without a collective in every step: every
``AGREE_EVERY`` training batches each rank starts an asynchronous all-reduce of "which signal did I get" and reads
the one it started ``AGREE_EVERY`` batches before, so no rank waits on it; at the end of each epoch the ranks agree
at once. When the agreed value holds a signal, every rank saves (rank 0 writes) and stops at that same batch.
Validation is not interrupted then: the stop comes at the next agreement. Under DeepSpeed, whose engine keeps an
accumulation window's gradients out of reach of a checkpoint, a stop that falls inside a window waits for its end. A stand-alone validate, test or predict
with several processes agrees the same way (``EvalAgreement``), and once more at its end.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from typing import TYPE_CHECKING, Any, Optional

from fulmen.checkpoint import io
from fulmen.trainer.states import LoopPhase, RunningStage, TrainerFn
from fulmen.utilities.exceptions import SIGTERMException
from fulmen.utilities.rank_zero import rank_zero_info, rank_zero_warn

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer

PREEMPTED_NAME = "preempted.ckpt"
_HPC = re.compile(r"hpc_ckpt_(\d+)\.ckpt$")


def slurm_managed() -> bool:
    """Whether SLURM started this process as a batch job step (not an interactive shell)."""
    return "SLURM_NTASKS" in os.environ and os.environ.get("SLURM_JOB_NAME") not in ("bash", "interactive")


def hpc_checkpoint(folder: str) -> Optional[str]:
    """The newest ``hpc_ckpt_<N>.ckpt`` in ``folder`` (highest N), as SLURM requeue saves them."""
    found = [(int(m.group(1)), p) for p in io.listdir(folder) if (m := _HPC.search(os.path.basename(p)))]
    return max(found)[1] if found else None


def next_hpc_path(folder: str) -> str:
    """``folder/hpc_ckpt_<N+1>.ckpt`` after the newest one there (``hpc_ckpt_1.ckpt`` for the first)."""
    newest = hpc_checkpoint(folder)
    number = int(_HPC.search(os.path.basename(newest)).group(1)) if newest else 0  # type: ignore[union-attr]
    return os.path.join(folder, f"hpc_ckpt_{number + 1}.ckpt")


def watched_signals() -> list[signal.Signals]:
    """SIGTERM always; SIGUSR1 too when SLURM runs the job (its requeue signal: ``#SBATCH --signal=USR1@90``)."""
    found = [signal.SIGTERM]
    if slurm_managed() and hasattr(signal, "SIGUSR1"):
        found.append(signal.SIGUSR1)
    return found


class SignalWatcher:
    """Installs the handlers for a run and puts the previous ones back at its end.

    A handler only stores the signal number in ``trainer.state.signal``, then calls the handler that was there before
    (if it was a Python function), as Lightning chains them.
    """

    def __init__(self, trainer: "Trainer") -> None:
        self.trainer = trainer
        self.previous: dict[int, Any] = {}
        self.pid = os.getpid()

    def install(self) -> None:
        # Python allows handlers only in the main thread; a Trainer run from another thread goes without.
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in watched_signals():
            self.previous[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self.previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        if os.getpid() != self.pid:
            return  # a forked DataLoader worker: the main process decides, and shuts the workers down
        if self.trainer.state.signal is None:
            self.trainer.state.signal = signum
        previous = self.previous.get(signum)
        if callable(previous):
            previous(signum, frame)


AGREE_EVERY = 16


class SignalAgreement:
    """Makes the processes of a multi-process fit stop for a signal at the same batch (see the module docstring)."""

    def __init__(self, trainer: "Trainer") -> None:
        self.trainer = trainer
        self.pending: Any = None  # the result function of the exchange started AGREE_EVERY batches ago
        self.stopping = False  # agreed on a signal, and waiting for the end of an accumulation window (DeepSpeed)

    def at_batch_end(self, batches_done: int) -> None:
        """After each training batch (``batches_done``: batches finished in this fit, the same on every rank)."""
        if self.stopping:
            stop_for_signal(self.trainer)
            return
        if batches_done % AGREE_EVERY:
            return
        self._settle()
        self.pending = self.trainer.strategy.start_max(self.trainer.state.signal or 0)

    def at_epoch_end(self) -> None:
        """Between epochs: agree right away."""
        self._settle()
        self.pending = self.trainer.strategy.start_max(self.trainer.state.signal or 0)
        self._settle()

    def close(self) -> None:
        """At the end of the fit: let the exchange in flight finish (its result no longer matters)."""
        if self.pending is not None:
            self.pending()
            self.pending = None

    def _settle(self) -> None:
        if self.pending is None:
            return
        agreed, self.pending = self.pending(), None
        if agreed:
            self.trainer.state.signal = self.trainer.state.signal or agreed  # the ranks that got no signal stop too
            self.stopping = True
            stop_for_signal(self.trainer)


class EvalAgreement:
    """The same for a stand-alone validate, test or predict with several processes. The ranks may have different
    numbers of batches (predict's shares differ by one; a custom loader may differ more), so they exchange every
    ``AGREE_EVERY`` batches only while every rank still has batches (up to the smallest count, found by one
    all-reduce at the start), and once more at the end of the run, which every rank reaches."""

    def __init__(self, trainer: "Trainer", batches: float) -> None:
        big = 2 ** 62  # a loader without a length: no periodic exchange for it
        own = big if batches == float("inf") else int(batches)
        self.common = -trainer.strategy.start_max(-own)()
        if self.common >= big:
            self.common = 0
        self.done = 0
        self.agreement = SignalAgreement(trainer)

    def at_batch_end(self) -> None:
        self.done += 1
        if self.done <= self.common:
            self.agreement.at_batch_end(self.done)

    def at_end(self) -> None:
        self.agreement.at_epoch_end()  # the exchange in flight, then one more at once: stops if a signal came


def eval_agreement(trainer: "Trainer", batches: float) -> "EvalAgreement | None":
    """An EvalAgreement for a stand-alone evaluation or predict run with several processes, else None (one process
    stops by itself; a validation inside fit follows the fit's agreement)."""
    if trainer.world_size == 1 or trainer.state.fn == TrainerFn.FITTING:
        return None
    return EvalAgreement(trainer, batches)


def stop_for_signal(trainer: "Trainer") -> None:
    """Called by a loop at a batch boundary once a signal was recorded: save if fitting, then raise
    ``SIGTERMException`` (a SystemExit, so the process ends with a message unless the caller catches it)."""
    if _inside_engine_window(trainer):
        return  # called again at the next batch ends, until the window ends
    signum = trainer.state.signal
    name = signal.Signals(signum).name
    state = trainer.state
    path = None
    if state.fn == TrainerFn.FITTING and state.stage != RunningStage.SANITY_CHECKING:
        if state.stage == RunningStage.VALIDATING:
            # Abandon this validation: the checkpoint is the state at the end of the batch that started it.
            trainer.state.save_position = {"phase": LoopPhase.BATCH_END, "rng": trainer.state.rng_before_validation}
        elif state.in_epoch:
            trainer.state.save_position = {"phase": LoopPhase.BATCH_END_DONE, "rng": None}
        path = _checkpoint_path(trainer)
        trainer.save_checkpoint(path)
        if signum == getattr(signal, "SIGUSR1", None) and slurm_managed() and trainer.is_global_zero:
            _requeue()
    where = f"epoch {state.epoch}, global step {state.global_step}"
    if path is None:
        message = f"Received {name} during {state.fn.value if state.fn else 'the run'} ({where}); stopped."
    else:
        resume = ("the requeued job resumes from it by itself" if os.path.basename(path).startswith("hpc_ckpt_")
                  else "resume with trainer.fit(model, ckpt_path='last')")
        message = f"Received {name} at {where}; saved checkpoint {path}: {resume}"
    raise SIGTERMException(message)


def _inside_engine_window(trainer: "Trainer") -> bool:
    """Whether a fit is inside an accumulation window whose gradients the strategy's engine keeps where no
    checkpoint reaches them (DeepSpeed's ZeRO buffers): a checkpoint now could not resume exactly, so the stop
    waits for the window's end (at most ``accumulate_grad_batches - 1`` more batches)."""
    state = trainer.state
    accumulate = trainer.accumulate_grad_batches
    return (trainer.strategy.holds_window_gradients and state.fn == TrainerFn.FITTING
            and state.in_epoch and accumulate > 1 and not state.is_last_batch
            and (state.batch_idx + 1) % accumulate != 0)


def _checkpoint_path(trainer: "Trainer") -> str:
    if slurm_managed():
        return next_hpc_path(trainer.default_root_dir)
    return os.path.join(preempted_folder(trainer), PREEMPTED_NAME)


def preempted_folder(trainer: "Trainer") -> str:
    """Where ``preempted.ckpt`` goes: the first ModelCheckpoint's folder, else ``<default_root_dir>/checkpoints``."""
    callbacks = trainer.checkpoint_callbacks
    if callbacks:
        return callbacks[0].resolve_dirpath(trainer)
    return os.path.join(trainer.default_root_dir, "checkpoints")


def _requeue() -> None:
    """Put this SLURM job (or array task) back in the queue, as Lightning's auto_requeue does."""
    job = os.environ.get("SLURM_JOB_ID", "")
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and task:
        job = f"{array_job}_{task}"
    if not job:
        rank_zero_warn("SIGUSR1 under SLURM, but SLURM_JOB_ID is not set: the job is not requeued")
        return
    try:
        result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        rank_zero_warn(f"Could not requeue SLURM job {job} with scontrol ({err}); requeue it by hand")
        return
    if result.returncode != 0:
        rank_zero_warn(f"`scontrol requeue {job}` failed ({result.stderr.strip()}); requeue the job by hand")
    else:
        rank_zero_info(f"Requeued SLURM job {job}")


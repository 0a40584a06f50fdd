"""Exceptions that users of Lightning already catch by name."""

from typing import Any


class MisconfigurationException(Exception):
    """A Trainer, module or data setting that cannot work; the message says which one and how to fix it."""


class SIGTERMException(SystemExit):
    """The run stopped at a batch boundary because the process received SIGTERM (or SIGUSR1 under SLURM).

    A SystemExit: uncaught, the process ends with status 1 and prints the message, which names the checkpoint
    saved and how to resume from it.
    """


class TrainingSpikeException(RuntimeError):
    """SpikeDetection stopped the run: the loss of a batch jumped. The batches to skip are in its JSON file."""

    def __init__(self, batch_idx: int, *args: Any) -> None:
        self.batch_idx = batch_idx
        super().__init__(f"Training spike detected in batch {batch_idx}", *args)


class TunerExit(Exception):
    """Ends a run that a ``Tuner`` started, once its finder callback has tuned: the Trainer tears down as after a
    normal end and the method returns None."""

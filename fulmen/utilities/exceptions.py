"""Exceptions that users of Lightning already catch by name."""


class MisconfigurationException(Exception):
    """A Trainer, module or data setting that cannot work; the message says which one and how to fix it."""


class SIGTERMException(SystemExit):
    """The run stopped at a batch boundary because the process received SIGTERM (or SIGUSR1 under SLURM).

    A SystemExit: uncaught, the process ends with status 1 and prints the message, which names the checkpoint
    saved and how to resume from it.
    """

"""Exceptions that users of Lightning already catch by name."""


class MisconfigurationException(Exception):
    """A Trainer, module or data setting that cannot work; the message says which one and how to fix it."""

"""The warning category of advice that may not apply to a given run (Lightning's ``PossibleUserWarning``)."""

from __future__ import annotations

import warnings


class PossibleUserWarning(UserWarning):
    """Advice about the run that may be deliberate (few DataLoader workers, a small log interval, ...); silence
    them all with ``fulmen.utilities.disable_possible_user_warnings()``."""


def disable_possible_user_warnings(module: str = "") -> None:
    """Ignore ``PossibleUserWarning`` (raised from modules matching ``module``, a regex; all by default)."""
    warnings.filterwarnings("ignore", category=PossibleUserWarning, module=module)

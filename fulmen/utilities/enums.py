"""String enums that compare equal to their values, as Lightning's do (``TrainerFn.FITTING == "fit"``)."""

from __future__ import annotations

from enum import Enum
from typing import Optional


class LightningEnum(str, Enum):
    """An enum of strings whose members equal their values, case-insensitively: ``GradClipAlgorithmType.NORM ==
    "Norm"``. ``from_str`` finds a member by value or name."""

    @classmethod
    def from_str(cls, value: str, source: str = "key") -> Optional["LightningEnum"]:
        """The member whose name (``source="key"``), value (``"value"``) or either (``"any"``) is ``value``,
        ignoring case; None when there is none."""
        wanted = value.lower()
        for member in cls:
            if source in ("key", "any") and member.name.lower() == wanted:
                return member
            if source in ("value", "any") and member.value.lower() == wanted:
                return member
        return None

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return self.value.lower() == other.lower()
        return super().__eq__(other)

    def __hash__(self) -> int:
        # Equal to its value, so it must hash as the value does (as a key, "fit" then finds TrainerFn.FITTING).
        return hash(self.value.lower())

    def __str__(self) -> str:
        return self.value


class GradClipAlgorithmType(LightningEnum):
    """``Trainer(gradient_clip_algorithm=...)``: clip the gradients' total norm, or each value."""

    VALUE = "value"
    NORM = "norm"

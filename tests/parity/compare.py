"""Assertions shared by the parity tests: fulmen's numbers against pytorch-lightning's."""

from __future__ import annotations

from typing import Any

import pytest


def assert_close_dicts(ours: dict[str, float], theirs: dict[str, float]) -> None:
    """The same keys, and values equal to float32 round-off."""
    assert sorted(ours) == sorted(theirs)
    for key in ours:
        assert ours[key] == pytest.approx(theirs[key], rel=1e-5, abs=1e-6), key


def assert_same_logger_calls(ours: list[tuple[Any, dict[str, float]]],
                             theirs: list[tuple[Any, dict[str, float]]]) -> None:
    """The same sequence of ``log_metrics(metrics, step)`` calls: steps, names and values."""
    assert [step for step, _ in ours] == [step for step, _ in theirs]
    for (_, a), (_, b) in zip(ours, theirs):
        assert_close_dicts(a, b)

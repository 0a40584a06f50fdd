"""A sample of the fault-injection points of tests/faults.py (`make faults` runs them all): killed with SIGKILL in a
step, in validation, half-way through a checkpoint write or a logger write, a run resumes with ckpt_path="last" to
the weights of a run never stopped, and every checkpoint left on disk loads."""

from __future__ import annotations

import pytest

from tests import faults

# One point of each kind, from the seeded list (so the sample is the table's own rows).
SAMPLE = [next(p for p in faults.points() if p[0] == kind) for kind in sorted(faults.COUNTS)]


@pytest.fixture(scope="module")
def expected(tmp_path_factory):
    return faults.reference(tmp_path_factory.mktemp("reference"))


def test_the_list_of_points_is_fixed_and_covers_every_kind():
    chosen = faults.points()
    assert len(chosen) >= 50 and chosen == faults.points()
    assert {kind for kind, _ in chosen} == set(faults.COUNTS)
    assert all(1 <= at <= faults.COUNTS[kind] for kind, at in chosen)


@pytest.mark.parametrize("kind, at", SAMPLE)
def test_killed_at_a_fault_point_then_resumed(tmp_path, expected, kind, at):
    outcome = faults.check_point(kind, at, tmp_path, expected)
    assert outcome.killed, outcome.error
    assert outcome.checkpoints > 0 and outcome.unloadable == []
    assert outcome.resumed, outcome.error
    assert outcome.same_weights


# With AsyncCheckpointIO: killed half-way through a background write (the loop training on meanwhile), and in a
# training step while a write may be in flight. The weights of the run never stopped do not depend on how the
# checkpoints were written.
ASYNC_SAMPLE = [next(p for p in faults.points() if p[0] == kind and p[1] > 2) for kind in ("save", "step")]


@pytest.mark.parametrize("kind, at", ASYNC_SAMPLE)
def test_killed_during_a_background_write_then_resumed(tmp_path, expected, kind, at):
    outcome = faults.check_point(kind, at, tmp_path, expected, async_io=True)
    assert outcome.killed, outcome.error
    assert outcome.checkpoints > 0 and outcome.unloadable == []
    assert outcome.resumed, outcome.error
    assert outcome.same_weights

"""The consumer check's decision (`connectors.observability.health.judge`) as a pure function of
committed and end offsets, the previous look, and time."""

from __future__ import annotations

import pytest

from connectors.observability.health import Observation, PartitionHealth, judge

STUCK_AFTER = 60.0


def look(
    previous: Observation | None, committed: int | None, end: int | None, now: float
) -> tuple[str, Observation | None]:
    return judge(previous, committed, end, now, STUCK_AFTER)


def test_offsets_that_cannot_be_fetched_are_unavailable_and_keep_the_memory() -> None:
    before = Observation(10, 5.0)
    assert look(before, None, None, 100.0) == ("offsets_unavailable", before)
    assert look(before, 10, None, 100.0) == ("offsets_unavailable", before)


@pytest.mark.parametrize(
    ("committed", "end"),
    [(100, 100), (0, 0), (None, 0), (120, 100)],  # caught up, empty, never used, truncated
)
def test_nothing_to_do_is_idle(committed: int | None, end: int) -> None:
    assert look(None, committed, end, 0.0) == ("idle", Observation(committed, None))
    assert look(Observation(committed, 1.0), committed, end, 999.0)[0] == "idle"


def test_the_first_look_at_work_gives_it_the_benefit_of_the_doubt() -> None:
    assert look(None, 100, 150, 7.0) == ("progressing", Observation(100, 7.0))
    # never committed, but records are waiting: work, not idle
    assert look(None, None, 3, 7.0) == ("progressing", Observation(None, 7.0))


def test_work_appearing_after_idle_starts_the_clock_then() -> None:
    idle = Observation(100, None)
    assert look(idle, 100, 101, 500.0) == ("progressing", Observation(100, 500.0))


def test_a_committed_offset_that_moved_is_progressing_and_restarts_the_clock() -> None:
    before = Observation(100, 0.0)
    assert look(before, 130, 150, 59.0) == ("progressing", Observation(130, 59.0))
    assert look(before, 130, 150, 600.0) == ("progressing", Observation(130, 600.0))


def test_unmoved_while_behind_is_progressing_until_stuck_after_then_stuck() -> None:
    before = Observation(100, 0.0)
    assert look(before, 100, 150, STUCK_AFTER - 0.001) == ("progressing", before)
    assert look(before, 100, 150, STUCK_AFTER) == ("stuck", before)
    assert look(before, 100, 150, 10 * STUCK_AFTER) == ("stuck", before)


def test_probing_often_does_not_make_a_slow_consumer_stuck() -> None:
    """The seed compares with the previous check; here with the last move, so a probe
    every second sees the same thing as a probe every minute."""
    seen: Observation | None = None
    committed = 0
    for second in range(300):
        if second % 50 == 0:
            committed += 5  # one slow batch every 50 s, inside STUCK_AFTER
        reason, seen = look(seen, committed, 1000, float(second))
        assert reason == "progressing", (second, seen)


def test_never_committed_and_never_moving_becomes_stuck() -> None:
    reason, seen = look(None, None, 10, 0.0)
    reason, seen = look(seen, None, 10, STUCK_AFTER + 1)
    assert reason == "stuck"


def test_stuck_recovers_as_soon_as_the_offset_moves() -> None:
    reason, seen = look(Observation(100, 0.0), 100, 150, 1000.0)
    assert reason == "stuck"
    assert look(seen, 101, 150, 1001.0) == ("progressing", Observation(101, 1001.0))
    assert look(seen, 150, 150, 1001.0)[0] == "idle"


def test_partition_health_figures_and_verdict() -> None:
    behind = PartitionHealth("t", 1, "stuck", 100, 150, 75.5)
    assert (behind.lag, behind.healthy) == (50, False)
    assert behind.as_dict() == {
        "topic": "t",
        "partition": 1,
        "reason": "stuck",
        "committed": 100,
        "end": 150,
        "lag": 50,
        "unchanged_for_s": 75.5,
    }
    assert PartitionHealth("t", 0, "idle", 5, 5).healthy
    assert PartitionHealth("t", 0, "progressing", None, 9).lag is None
    assert not PartitionHealth("t", 0, "offsets_unavailable", None, None).healthy

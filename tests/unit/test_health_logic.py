"""The decisions of `/healthz` (`connectors.observability.health.judge`) as pure functions of
committed and end offsets, the previous look, the pipeline's activity and time; the consumer
check over a fake pipeline; how broker errors reading offsets are judged."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import errors as kafka_errors

from connectors.config.settings import KafkaSettings
from connectors.core.records import TopicPartition
from connectors.kafka.errors import Where
from connectors.kafka.offsets import OffsetsUnavailable, unavailable
from connectors.observability.health import (
    Blocked,
    ConsumerCheck,
    Observation,
    PartitionHealth,
    Waiting,
    Wedged,
    judge,
    wedged,
)
from connectors.runtime.retry import Waiting as RetryWaiting

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
    """Cloudflare's check compares with the previous check; here with the last move, so a probe
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


# -- a stage running too long ---------------------------------------------------------------


def test_idle_or_polling_is_never_wedged() -> None:
    assert wedged((None, 0.0), 10_000.0, STUCK_AFTER) is None


def test_a_stage_within_its_time_is_not_wedged_then_is() -> None:
    assert wedged(("transform", 100.0), 100.0 + STUCK_AFTER - 0.1, STUCK_AFTER) is None
    found = wedged(("transform", 100.0), 100.0 + STUCK_AFTER + 70.24, STUCK_AFTER)
    assert found == Wedged("transform", STUCK_AFTER + 70.24)
    assert found.as_dict() == {"stage": "transform", "for_s": 130.2}


class FakeStatus:
    """A pipeline as the health server sees it, with its activity set by the test."""

    connector = "fake"
    group_id = "fake"
    commit_interval_s = 0.0
    kafka = KafkaSettings()

    def __init__(
        self,
        partitions: set[TopicPartition],
        activity: tuple[str | None, float],
        waiting: Waiting | None = None,
    ):
        self.partitions = partitions
        self.now_doing = activity
        self.waiting = waiting
        self.joined = True

    def activity(self) -> tuple[str | None, float]:
        return self.now_doing

    def blocked(self) -> Waiting | None:
        return self.waiting

    async def assignment(self) -> set[TopicPartition]:
        return set(self.partitions)

    async def writer_check(self) -> None:
        return None


class FakeOffsets:
    def __init__(self, ends: dict[TopicPartition, int], error: OffsetsUnavailable | None = None):
        self.ends = ends
        self.error = error

    async def fetch(
        self, partitions: set[TopicPartition]
    ) -> tuple[dict[TopicPartition, int | None], dict[TopicPartition, int]]:
        if self.error is not None:
            raise self.error
        return {tp: self.ends[tp] for tp in partitions}, dict(self.ends)


def check(status: FakeStatus, offsets: FakeOffsets, now: float) -> ConsumerCheck:
    fake: Any = offsets
    return ConsumerCheck(status, fake, STUCK_AFTER, STUCK_AFTER, clock=lambda: now)


def test_a_transform_hung_before_any_partition_is_assigned_is_unhealthy() -> None:
    """The first batch hangs in the transform: no partition, no offset, yet not healthy."""
    status = FakeStatus(set(), ("transform", 0.0))
    report = asyncio.run(check(status, FakeOffsets({}), 130.2).run())
    assert report.partitions == ()
    assert report.wedged == Wedged("transform", 130.2) and not report.healthy


def test_a_wedged_stage_makes_idle_partitions_unhealthy_and_recovers() -> None:
    status = FakeStatus({("t", 0)}, ("write", 0.0))
    offsets = FakeOffsets({("t", 0): 10})
    report = asyncio.run(check(status, offsets, STUCK_AFTER + 1).run())
    assert [p.reason for p in report.partitions] == ["idle"]
    assert report.wedged is not None and report.wedged.stage == "write" and not report.healthy

    status.now_doing = (None, STUCK_AFTER + 1)
    report = asyncio.run(check(status, offsets, STUCK_AFTER + 2).run())
    assert report.wedged is None and report.healthy


def test_a_stage_waiting_on_a_dependency_is_blocked_not_wedged() -> None:
    """The writer's target has been down for twice the deadline: the write stage is long,
    but it is waiting to retry, which a restart cannot cure. The partition behind it is
    `blocked` with the reason, not `stuck`, and nothing is wedged."""
    waiting = RetryWaiting("write", "HTTP 503 from https://sink", since=5.0)
    status = FakeStatus({("t", 0)}, ("write", 0.0), waiting)
    fake: Any = FakeOffsets({("t", 0): 10})
    fake.fetch = _behind(committed=4, end=10)
    probe = ConsumerCheck(status, fake, STUCK_AFTER, STUCK_AFTER, clock=lambda: 1.0)
    asyncio.run(probe.run())  # the first look: progressing
    probe._clock = lambda: 2 * STUCK_AFTER + 5
    report = asyncio.run(probe.run())
    assert report.wedged is None and probe.wedge() is None
    assert [p.reason for p in report.partitions] == ["blocked"] and not report.healthy
    assert report.blocked == Blocked("write", "HTTP 503 from https://sink", 2 * STUCK_AFTER)

    # The dependency is back but the retried attempt itself hangs past the deadline.
    status.waiting = RetryWaiting("write", "HTTP 503", since=5.0, attempt_started=10.0)
    probe._clock = lambda: 10.0 + STUCK_AFTER + 1
    found = probe.wedge()
    assert found is not None and found.stage == "write" and found.for_s == STUCK_AFTER + 1


def test_a_write_that_lands_while_offsets_are_read_is_not_reported_blocked() -> None:
    """The sink comes back during the probe: the retried write succeeds and its offsets are
    committed while the probe awaits them. The report must not pair the committed offsets
    (idle) with the wait that ended before they were read."""
    waiting = RetryWaiting("write", "HTTP 503 from https://sink", since=5.0)
    status = FakeStatus({("t", 0)}, ("write", 0.0), waiting)
    fake: Any = FakeOffsets({("t", 0): 10})

    async def fetch_while_the_write_lands(
        partitions: set[TopicPartition],
    ) -> tuple[dict[TopicPartition, int | None], dict[TopicPartition, int]]:
        status.waiting, status.now_doing = None, (None, 9.0)  # written and committed
        return {tp: 10 for tp in partitions}, {tp: 10 for tp in partitions}

    fake.fetch = fetch_while_the_write_lands
    probe = ConsumerCheck(status, fake, STUCK_AFTER, STUCK_AFTER, clock=lambda: 9.5)
    report = asyncio.run(probe.run())
    assert [p.reason for p in report.partitions] == ["idle"]
    assert report.blocked is None and report.healthy


def test_stuck_without_waiting_on_anything_stays_stuck() -> None:
    status = FakeStatus({("t", 0)}, (None, 0.0))
    fake: Any = FakeOffsets({("t", 0): 10})
    fake.fetch = _behind(committed=4, end=10)
    probe = ConsumerCheck(status, fake, STUCK_AFTER, STUCK_AFTER, clock=lambda: 1.0)
    asyncio.run(probe.run())
    probe._clock = lambda: STUCK_AFTER + 2
    report = asyncio.run(probe.run())
    assert [p.reason for p in report.partitions] == ["stuck"] and report.blocked is None


def _behind(committed: int, end: int) -> Any:
    async def fetch(
        partitions: set[TopicPartition],
    ) -> tuple[dict[TopicPartition, int | None], dict[TopicPartition, int]]:
        return {tp: committed for tp in partitions}, {tp: end for tp in partitions}

    return fetch


def test_offsets_refused_by_the_broker_are_reported_as_such() -> None:
    refused = OffsetsUnavailable("read offsets for the health checks: not authorized", refused=True)
    status = FakeStatus({("t", 0), ("t", 1)}, (None, 0.0))
    report = asyncio.run(check(status, FakeOffsets({}, refused), 1.0).run())
    assert [p.reason for p in report.partitions] == ["offsets_refused"] * 2
    assert report.error == str(refused) and not report.healthy
    transient = OffsetsUnavailable("read offsets: KafkaConnectionError")
    report = asyncio.run(check(status, FakeOffsets({}, transient), 1.0).run())
    assert [p.reason for p in report.partitions] == ["offsets_unavailable"] * 2


# -- broker errors met reading offsets, through the one translation --------------------------

WHERE = Where(
    "read offsets for the health checks",
    KafkaSettings(),
    operation="DESCRIBE",
    topics=("orders",),
    group="billing",
)


@pytest.mark.parametrize(
    "error",
    [
        kafka_errors.KafkaConnectionError("no broker"),
        kafka_errors.RequestTimedOutError(),
        kafka_errors.NotCoordinatorForGroupError(),
        kafka_errors.UnknownError(),
        TimeoutError(),
        OSError(111, "Connection refused"),
    ],
)
def test_what_may_pass_with_time_makes_offsets_unavailable(error: Exception) -> None:
    found = unavailable("read offsets", error, WHERE)
    assert not found.refused
    assert str(found).startswith(f"read offsets: {type(error).__name__}"), found


def test_a_missing_describe_permission_refuses_offsets_with_the_one_line_message() -> None:
    found = unavailable("read offsets", kafka_errors.TopicAuthorizationFailedError("orders"), WHERE)
    assert found.refused
    assert str(found) == (
        "read offsets for the health checks: not authorized: DESCRIBE on topic 'orders' "
        "denied to User:ANONYMOUS (TOPIC_AUTHORIZATION_FAILED)"
    )
    group = unavailable("read offsets", kafka_errors.GroupAuthorizationFailedError(), WHERE)
    assert group.refused and "not authorized" in str(group) and "'billing'" in str(group)
    assert "\n" not in str(group)

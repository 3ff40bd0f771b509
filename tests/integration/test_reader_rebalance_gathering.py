"""Records taken by a gathering that a rebalance or a failed fetch cut short are read
again, never skipped.

A batch is gathered from several fetches (`connectors.kafka.gathering`). When the group
rebalances meanwhile, the gathering drops what it took. If the partition comes back to
the same member and its new position has already moved past those records (the new
assignment handed some of them out again before the rebalance was noticed), the next poll
would start after them, and their offsets would be committed unread: records lost. The
reader gives them back (seeks to the first of them) instead.

The rebalance is made on a real broker the way the group coordinator makes it, at the
moment that matters: at a fetch inside a gathering, the reader's rebalance listener moves
to a new generation and the partition's position goes back to the commit, as a new
assignment of the same partition does. A fetch that fails there (the broker went away)
likewise leaves records taken and not handed on: the poll fails, is retried, and must
start from them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka import errors as kafka_errors

from connectors import RetriableError
from harness.kafka import KafkaBroker, create_topic
from harness.kcat import produce
from tests.integration.test_reader_batches import VALUE, _reader, _revoked

pytestmark = pytest.mark.integration

TOTAL = 20_000
BATCH = 4_000


async def _read_all(reader: Any, topic: str, what: str) -> tuple[list[int], int]:
    """Every offset read, batch after batch, committing each; `what` (a rebalance, a failed
    fetch) is made once, at the first fetch inside a gathering. Returns the offsets and how
    many were made."""
    await reader.start(_revoked)
    consumer = reader.consumer
    real = consumer.getmany
    committed = 0
    made = 0

    async def getmany(*args: Any, **kwargs: Any) -> Any:
        nonlocal made
        if not made and kwargs.get("max_records", BATCH) < BATCH:  # inside a gathering
            made += 1
            if what == "fetch fails":
                raise kafka_errors.KafkaConnectionError("connection to the broker lost")
            reader._listener.generation += 1  # noqa: SLF001 - revoked, then assigned again
            consumer.seek(TopicPartition(topic, 0), committed)  # the new assignment's start
        return await real(*args, **kwargs)

    consumer.getmany = getmany
    offsets: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while len(set(offsets)) < TOTAL and time.monotonic() < deadline:
            try:
                batch = await reader.batch()
            except RetriableError:
                continue  # the runner retries the poll
            if batch.records:
                offsets.extend(r.offset for r in batch.records)
                committed = batch.next_offsets[(topic, 0)]
                await reader.commit(batch.next_offsets)
    finally:
        await reader.close()
    return offsets, made


@pytest.mark.parametrize("what", ["rebalance", "fetch fails"])
def test_records_taken_by_a_gathering_cut_short_are_read_again(
    kafka: KafkaBroker, what: str
) -> None:
    topic = f"regather-{uuid.uuid4().hex[:8]}"
    create_topic(kafka.bootstrap, topic, partitions=1)
    produce(kafka.bootstrap, topic, ((0, b"k%d" % n, VALUE) for n in range(TOTAL)))
    # A fetch holds about 1,500 of these records: every batch of 4,000 is gathered.
    reader = _reader(kafka.bootstrap, topic, BATCH, max_partition_fetch_bytes=262_144)
    offsets, made = asyncio.run(_read_all(reader, topic, what))
    assert made == 1
    missing = sorted(set(range(TOTAL)) - set(offsets))
    assert not missing, f"{len(missing)} records skipped, from offset {missing[0]}"
    assert max(offsets) == TOTAL - 1


async def _read_across(reader: Any, topic: str) -> tuple[dict[int, list[int]], int]:
    """Every offset read, per partition, committing each batch; once, the fetch inside a
    gathering that notices the rebalance hands out records of a partition the gathering
    had not taken any of (partition 1 is held back from the batch's first fetch, and
    partition 0 from that one). Returns the offsets and how many times it was made."""
    await reader.start(_revoked)
    consumer = reader.consumer
    real = consumer.getmany
    p0, p1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    made = 0

    async def getmany(*args: Any, **kwargs: Any) -> Any:
        nonlocal made
        if made or p1 not in consumer.assignment():
            return await real(*args, **kwargs)
        if kwargs.get("max_records") == BATCH:  # the first fetch of a batch
            consumer.pause(p1)
            return await real(*args, **kwargs)
        made += 1
        reader._listener.generation += 1  # noqa: SLF001 - revoked, then assigned again
        consumer.pause(p0)
        consumer.resume(p1)
        try:
            deadline = time.monotonic() + 30
            while True:
                got = await real(*args, **kwargs)
                if got or time.monotonic() > deadline:
                    return got
        finally:
            consumer.resume(p0)

    consumer.getmany = getmany
    offsets: dict[int, list[int]] = {0: [], 1: []}
    try:
        deadline = time.monotonic() + 60
        while sum(map(len, offsets.values())) < TOTAL and time.monotonic() < deadline:
            batch = await reader.batch()
            for r in batch.records:
                offsets[r.partition].append(r.offset)
            if batch.records:
                await reader.commit(batch.next_offsets)
    finally:
        await reader.close()
    return offsets, made


def test_records_of_another_partition_taken_as_the_rebalance_is_noticed_are_read_again(
    kafka: KafkaBroker,
) -> None:
    """The fetch that shows a gathering the rebalance already hands out the new
    assignment's records, possibly of a partition the gathering held none of: they are
    given back too, or that partition's next poll starts after them."""
    topic = f"regather2-{uuid.uuid4().hex[:8]}"
    create_topic(kafka.bootstrap, topic, partitions=2)
    half = TOTAL // 2
    records = ((n % 2, b"k%d" % n, VALUE) for n in range(TOTAL))
    produce(kafka.bootstrap, topic, records)
    reader = _reader(kafka.bootstrap, topic, BATCH, max_partition_fetch_bytes=262_144)
    offsets, made = asyncio.run(_read_across(reader, topic))
    assert made == 1
    for partition, read in offsets.items():
        missing = sorted(set(range(half)) - set(read))
        assert not missing, (
            f"partition {partition}: {len(missing)} records skipped, from offset {missing[0]}"
        )

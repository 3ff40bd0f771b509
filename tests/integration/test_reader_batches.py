"""Batches as large as the backlog allows, on a real broker.

A connector that is behind gets full batches of `BATCH_MAX_MESSAGES`, whatever a fetch
holds (here a fetch holds about 1,500 records, a batch 4,000: each batch is completed by
further fetches, never a fetch split into a large batch and a small remainder); one that is
caught up gets what arrived without waiting for a batch to fill; each assigned partition
fetches its share of `KAFKA_FETCH_BUDGET_BYTES`. With `KAFKA_FETCH_MIN_BYTES` the broker
gathers a fetch for up to `KAFKA_FETCH_MAX_WAIT_MS`, and a record that never makes up the
minimum still arrives after that wait.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from connectors.config.settings import KafkaSettings
from connectors.core.reader import ReaderContext
from harness.kafka import KafkaBroker, create_topic
from harness.kcat import produce
from readers.kafka import KafkaReader

pytestmark = pytest.mark.integration

VALUE = b"v" * 150


async def _revoked(_: Any) -> None:
    return None


def _reader(bootstrap: str, topic: str, most: int, **kafka: Any) -> KafkaReader:
    context = ReaderContext(
        connector_name=f"g-{uuid.uuid4().hex[:8]}",
        topics=(topic,),
        batch_max_messages=most,
        batch_max_wait_ms=1000,
    )
    settings = KafkaSettings.model_validate({"bootstrap_servers": bootstrap, **kafka})
    return KafkaReader(settings, context)


async def _joined(reader: KafkaReader) -> None:
    """Polls until the group gave the reader its partitions: the fetches that count begin."""
    deadline = time.monotonic() + 30
    while not reader.consumer.assignment():
        if time.monotonic() > deadline:
            raise AssertionError("the reader was given no partition in 30 s")
        await reader.batch()


async def _sizes(reader: KafkaReader, total: int) -> list[int]:
    sizes: list[int] = []
    await reader.start(_revoked)
    try:
        deadline = time.monotonic() + 60
        while sum(sizes) < total and time.monotonic() < deadline:
            batch = await reader.batch()
            if batch.records:
                sizes.append(len(batch.records))
                offsets = [r.offset for r in batch.records]
                assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))
    finally:
        await reader.close()
    return sizes


def test_a_backlog_is_read_in_full_batches(kafka: KafkaBroker) -> None:
    topic = f"batches-{uuid.uuid4().hex[:8]}"
    create_topic(kafka.bootstrap, topic, partitions=1)
    produce(kafka.bootstrap, topic, ((0, b"k%d" % n, VALUE) for n in range(20_000)))
    reader = _reader(kafka.bootstrap, topic, 4000, max_partition_fetch_bytes=262_144)
    sizes = asyncio.run(_sizes(reader, 20_000))
    assert sum(sizes) == 20_000
    assert sizes == [4000] * 5, sizes  # a 256 KiB fetch holds about 1,500 of these


def test_a_caught_up_reader_does_not_wait_for_a_full_batch(kafka: KafkaBroker) -> None:
    topic = f"batches-{uuid.uuid4().hex[:8]}"
    create_topic(kafka.bootstrap, topic, partitions=1)
    produce(kafka.bootstrap, topic, ((0, b"k%d" % n, VALUE) for n in range(10)))
    reader = _reader(kafka.bootstrap, topic, 4000)

    async def timed() -> tuple[int, float]:
        await reader.start(_revoked)
        try:
            while True:
                started = time.monotonic()
                batch = await reader.batch()
                if batch.records:
                    return len(batch.records), time.monotonic() - started
        finally:
            await reader.close()

    count, seconds = asyncio.run(timed())
    assert count == 10
    assert seconds < 0.9  # BATCH_MAX_WAIT_MS is 1000: the batch did not wait to fill


def test_each_partition_fetches_its_share_of_the_budget(kafka: KafkaBroker) -> None:
    topic = f"budget-{uuid.uuid4().hex[:8]}"
    create_topic(kafka.bootstrap, topic, partitions=8)
    produce(kafka.bootstrap, topic, ((n % 8, b"k%d" % n, VALUE) for n in range(800)))
    reader = _reader(kafka.bootstrap, topic, 1000, fetch_budget_bytes=4_194_304)

    async def share() -> int:
        await reader.start(_revoked)
        try:
            read = 0
            while read < 800:
                read += len((await reader.batch()).records)
            return int(reader.consumer._fetcher._max_partition_fetch_bytes)  # noqa: SLF001
        finally:
            await reader.close()

    assert asyncio.run(share()) == 4_194_304 // 8


def test_a_caught_up_reader_does_not_wait_for_records_still_being_produced(
    kafka: KafkaBroker,
) -> None:
    """A producer writing steadily to 6 partitions leaves "more in the log" after every
    fetch; the batch takes what the logs held when it began, and does not wait for the
    rest to arrive."""
    from aiokafka import AIOKafkaProducer

    topic = f"batches-{uuid.uuid4().hex[:8]}"
    create_topic(kafka.bootstrap, topic, partitions=6)
    reader = _reader(kafka.bootstrap, topic, 100_000)  # BATCH_MAX_WAIT_MS 1000

    async def timed() -> list[float]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, linger_ms=5)
        await producer.start()
        stop = asyncio.Event()

        async def produce_steadily() -> None:
            while not stop.is_set():
                for n in range(60):
                    await producer.send(topic, VALUE, partition=n % 6)
                await asyncio.sleep(0.01)  # about 6,000 records/s, the offered load

        await reader.start(_revoked)
        producing = asyncio.create_task(produce_steadily())
        took: list[float] = []
        try:
            deadline = time.monotonic() + 30
            while len(took) < 20 and time.monotonic() < deadline:
                started = time.monotonic()
                batch = await reader.batch()
                if batch.records:
                    took.append(time.monotonic() - started)
        finally:
            stop.set()
            await producing
            await producer.stop()
            await reader.close()
        return took

    took = asyncio.run(timed())
    assert len(took) == 20
    # Waiting for the batch to fill would take BATCH_MAX_WAIT_MS, 1 s, for each of them.
    assert sorted(took)[10] < 0.5, took


def test_a_fetch_the_broker_gathers_still_delivers_one_record(kafka: KafkaBroker) -> None:
    """A minimum no trickle reaches (1 MiB) holds the record for the wait (400 ms), not
    for good."""
    topic = f"fetch-min-{uuid.uuid4().hex[:8]}"
    create_topic(kafka.bootstrap, topic, partitions=1)
    reader = _reader(kafka.bootstrap, topic, 4000, fetch_min_bytes=1_048_576, fetch_max_wait_ms=400)

    async def first_record() -> tuple[list[bytes | None], float]:
        await reader.start(_revoked)
        try:
            await _joined(reader)
            produce(kafka.bootstrap, topic, [(0, b"k", b"one")])
            started = time.monotonic()
            deadline = started + 30
            while time.monotonic() < deadline:
                batch = await reader.batch()
                if batch.records:
                    return [r.value for r in batch.records], time.monotonic() - started
            raise AssertionError("the record never arrived")
        finally:
            await reader.close()

    values, seconds = asyncio.run(first_record())
    assert values == [b"one"]
    assert seconds < 5, seconds


def test_a_gathered_fetch_gives_a_steady_trickle_fewer_larger_batches(kafka: KafkaBroker) -> None:
    """The same trickle (about 2,000 records/s) read with Kafka's defaults and with the
    broker gathering 64 KiB (about 380 records) or 300 ms: every record arrives, in order,
    in a fraction of the batches."""
    from aiokafka import AIOKafkaProducer

    async def batch_sizes(**kafka_settings: int) -> list[int]:
        topic = f"fetch-min-{uuid.uuid4().hex[:8]}"
        create_topic(kafka.bootstrap, topic, partitions=1)
        reader = _reader(kafka.bootstrap, topic, 100_000, **kafka_settings)
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, linger_ms=5)

        async def trickle() -> None:
            for _round in range(150):
                for _ in range(20):
                    await producer.send(topic, VALUE, partition=0)
                await asyncio.sleep(0.01)

        sizes: list[int] = []
        offsets: list[int] = []
        producing: asyncio.Task[None] | None = None
        await producer.start()
        await reader.start(_revoked)
        try:
            await _joined(reader)
            producing = asyncio.create_task(trickle())
            deadline = time.monotonic() + 60
            while len(offsets) < 3000 and time.monotonic() < deadline:
                batch = await reader.batch()
                if batch.records:
                    sizes.append(len(batch.records))
                    offsets.extend(r.offset for r in batch.records)
        finally:
            if producing is not None:
                await producing
            await producer.stop()
            await reader.close()
        assert offsets == list(range(3000))
        return sizes

    async def both() -> tuple[list[int], list[int]]:
        return (
            await batch_sizes(),
            await batch_sizes(fetch_min_bytes=65_536, fetch_max_wait_ms=300),
        )

    plain, gathered = asyncio.run(both())
    assert len(gathered) * 3 <= len(plain), (plain, gathered)

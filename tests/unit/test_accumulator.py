"""Accumulation for writers of large objects: when a batch is held back, when it is due,
and that what was held is written and committed before partitions are revoked."""

from __future__ import annotations

import asyncio

import pytest

from connectors import Batch, FlushPolicy, Record
from connectors.config.pipeline import resolve
from connectors.runtime.accumulator import Accumulator
from connectors.runtime.runner import Runner
from connectors.testing.fakes import MemoryDeadLetters, MemoryReader, MemoryWriter

ENV = {
    "CONNECTOR_NAME": "acc",
    "TOPICS": "raw",
    "TOPIC_SCHEMAS": "raw=bytes",
    "RETRY_INITIAL_MS": "1",
    "RETRY_MAX_MS": "2",
}
LARGE = FlushPolicy(max_bytes=1 << 30, max_interval_s=3600.0)


def records(partition: int, start: int, count: int, size: int = 10) -> list[Record]:
    return [
        Record("raw", partition, o, f"k{partition}-{o}".encode(), b"v" * size)
        for o in range(start, start + count)
    ]


def test_without_a_policy_every_batch_is_due_at_once() -> None:
    acc = Accumulator(None)
    assert not acc.due()
    acc.add(Batch(records(0, 0, 2)))
    assert acc.due()
    assert [r.offset for r in acc.take().records] == [0, 1]
    assert not acc.due() and acc.take().records == []


def test_a_batch_taken_alone_is_the_readers_and_several_are_one() -> None:
    """A lone batch is handed on as it came (its offsets walked once, by the reader);
    batches held together become one, in order, the topic ids of all of them kept."""
    acc = Accumulator(None)
    mine = Batch.of_runs([records(0, 0, 2), records(1, 5, 1)], {"raw": "id-1"})
    acc.add(mine)
    assert acc.take() is mine
    held = Accumulator(LARGE)
    held.add(Batch.of_runs([records(0, 0, 2)], {"raw": "id-1"}))
    held.add(Batch(records(1, 5, 1), {"other": "id-2"}))
    held.add(Batch(records(0, 2, 2)))
    taken = held.take()
    assert [(r.partition, r.offset) for r in taken.records] == [
        (0, 0),
        (0, 1),
        (1, 5),
        (0, 2),
        (0, 3),
    ]
    assert taken.next_offsets == {("raw", 0): 4, ("raw", 1): 6}
    assert taken.first_offsets == {("raw", 0): 0, ("raw", 1): 5}
    assert taken.topic_ids == {"raw": "id-1", "other": "id-2"}
    assert not held.due() and held.take().records == []


def test_an_empty_batch_is_never_due() -> None:
    acc = Accumulator(FlushPolicy(max_bytes=1, max_interval_s=0.0))
    acc.add(Batch(()))
    assert not acc.due()


def test_bytes_count_keys_and_values_and_reaching_the_limit_makes_it_due() -> None:
    acc = Accumulator(FlushPolicy(max_bytes=50, max_interval_s=3600.0))
    acc.add(Batch(records(0, 0, 2, size=20)))  # keys "k0-0", "k0-1": 4 bytes each; 48 in all
    assert not acc.due()
    acc.add(Batch([Record("raw", 0, 2, None, None)]))  # a keyless tombstone weighs nothing
    assert not acc.due()
    acc.add(Batch(records(0, 3, 1, size=0)))
    assert acc.due()


def test_record_count_limit() -> None:
    acc = Accumulator(FlushPolicy(max_bytes=1 << 30, max_interval_s=3600.0, max_records=5))
    acc.add(Batch(records(0, 0, 3)))
    assert not acc.due()
    acc.add(Batch(records(1, 0, 2)))
    assert acc.due()


def test_interval_counts_from_the_first_record_held(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("connectors.runtime.accumulator.time.monotonic", lambda: now[0])
    acc = Accumulator(FlushPolicy(max_bytes=1 << 30, max_interval_s=10.0))
    acc.add(Batch(()))
    now[0] += 100  # nothing held yet: the clock has not started
    acc.add(Batch(records(0, 0, 1)))
    now[0] += 9.9
    acc.add(Batch(records(0, 1, 1)))
    assert not acc.due()
    now[0] += 0.1
    assert acc.due()
    acc.take()
    acc.add(Batch(records(0, 2, 1)))
    assert not acc.due(), "take() restarts the clock"


def test_take_keeps_order_and_topic_ids_then_starts_empty() -> None:
    acc = Accumulator(LARGE)
    acc.add(Batch(records(0, 0, 2), {"raw": "id-1"}))
    acc.add(Batch(records(1, 0, 1), {"raw": "id-1"}))
    taken = acc.take()
    assert [(r.partition, r.offset) for r in taken.records] == [(0, 0), (0, 1), (1, 0)]
    assert taken.topic_ids == {"raw": "id-1"}
    assert taken.next_offsets == {("raw", 0): 2, ("raw", 1): 1}
    after = acc.take()
    assert after.records == [] and after.topic_ids == {}


def runner(reader: MemoryReader, writer: MemoryWriter, until_caught_up: bool = True) -> Runner:
    return Runner(
        resolve(ENV),
        until_caught_up=until_caught_up,
        reader=reader,
        writer=writer,
        dead_letters=MemoryDeadLetters(),
    )


async def test_runner_holds_batches_until_the_policy_says_write() -> None:
    reader = MemoryReader([records(0, 0, 2), records(0, 2, 2), records(0, 4, 2)])
    writer = MemoryWriter(
        flush_policy=FlushPolicy(max_bytes=1 << 30, max_interval_s=3600.0, max_records=4)
    )
    await asyncio.wait_for(runner(reader, writer).run(), timeout=10)
    assert [len(w.entries) for w in writer.writes] == [4, 2], "4 due by count, 2 at the end"
    assert reader.commits == [{("raw", 0): 4}, {("raw", 0): 6}]
    assert set(writer.store) == {f"k0-{o}".encode() for o in range(6)}


async def test_revocation_writes_and_commits_what_was_held_before_partitions_go() -> None:
    order: list[str] = []

    class Watching(MemoryReader):
        async def commit(self, offsets):  # type: ignore[no-untyped-def]
            order.append(f"commit {dict(offsets)}")
            await super().commit(offsets)

    reader = Watching([records(0, 0, 2), records(1, 0, 3), records(0, 2, 1)], revoke_after=2)
    writer = MemoryWriter(flush_policy=LARGE)
    await asyncio.wait_for(runner(reader, writer).run(), timeout=10)
    assert reader.revoked == [[("raw", 0), ("raw", 1)]]
    # Held: 2 + 3 records. The revocation wrote them in one write and committed them
    # before it returned; the third batch came after and was written at the end.
    assert [len(w.entries) for w in writer.writes] == [5, 1]
    assert reader.commits == [{("raw", 0): 2, ("raw", 1): 3}, {("raw", 0): 3}]
    assert order == ["commit {('raw', 0): 2, ('raw', 1): 3}", "commit {('raw', 0): 3}"]


async def test_a_revocation_with_nothing_held_writes_nothing() -> None:
    reader = MemoryReader([records(0, 0, 2), records(0, 2, 1)], revoke_after=1)
    writer = MemoryWriter()  # no policy: the batch was written and committed already
    await asyncio.wait_for(runner(reader, writer).run(), timeout=10)
    assert reader.revoked and [len(w.entries) for w in writer.writes] == [2, 1]
    assert reader.commits == [{("raw", 0): 2}, {("raw", 0): 3}]


async def test_stop_writes_and_commits_what_was_held() -> None:
    reader = MemoryReader([records(0, 0, 3)])
    writer = MemoryWriter(flush_policy=LARGE)
    run = runner(reader, writer, until_caught_up=False)
    task = asyncio.create_task(run.run())

    async def until_held() -> None:
        while reader.assignment() and await reader.positions({("raw", 0)}) != {("raw", 0): 3}:
            await asyncio.sleep(0.001)

    await asyncio.wait_for(until_held(), timeout=5)
    assert writer.writes == []
    run.stop()
    await asyncio.wait_for(task, timeout=5)
    assert [len(w.entries) for w in writer.writes] == [3]
    assert reader.commits == [{("raw", 0): 3}]


def test_a_writer_declares_its_flush_policy_or_has_none() -> None:
    from connectors.core.writer import Accumulating, flush_policy

    class Plain:
        async def start(self) -> None: ...

        async def write(self, batch: object) -> None: ...

        async def check(self) -> None: ...

        async def close(self) -> None: ...

    assert flush_policy(Plain()) is None and not isinstance(Plain(), Accumulating)
    assert flush_policy(MemoryWriter()) is None
    assert flush_policy(MemoryWriter(flush_policy=LARGE)) is LARGE
    odd = MemoryWriter()
    odd.flush_policy = "1 MiB"  # type: ignore[assignment]
    assert flush_policy(odd) is None

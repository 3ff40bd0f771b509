"""The runner's delivery rules, against in-memory fakes of the reader and writer."""

from __future__ import annotations

import asyncio

import pytest

from connectors import FatalError, Record
from connectors.config.pipeline import Pipeline, resolve
from connectors.runtime.runner import Runner
from connectors.testing.fakes import MemoryDeadLetters, MemoryReader, MemoryWriter, retriable

BASE = {
    "CONNECTOR_NAME": "unit",
    "TOPICS": "raw",
    "TOPIC_SCHEMAS": "raw=bytes",
    "RETRY_INITIAL_MS": "1",
    "RETRY_MAX_MS": "2",
}


def pipeline(**env: str) -> Pipeline:
    return resolve({**BASE, **env})


def records(partition: int, start: int, count: int, topic: str = "raw") -> list[Record]:
    return [
        Record(topic, partition, o, f"k{partition}-{o}".encode(), f"v{o}".encode())
        for o in range(start, start + count)
    ]


def make_runner(
    pipe: Pipeline,
    reader: MemoryReader,
    writer: MemoryWriter,
    until_caught_up: bool = True,
    letters: MemoryDeadLetters | None = None,
) -> Runner:
    return Runner(
        pipe,
        until_caught_up=until_caught_up,
        reader=reader,
        writer=writer,
        dead_letters=letters or MemoryDeadLetters(),
    )


async def run(runner: Runner) -> None:
    await asyncio.wait_for(runner.run(), timeout=10)


async def test_commits_each_batch_after_its_write() -> None:
    reader = MemoryReader([records(0, 0, 3), records(1, 0, 2), records(0, 3, 2)])
    writer = MemoryWriter()
    await run(make_runner(pipeline(), reader, writer))
    assert reader.commits == [{("raw", 0): 3}, {("raw", 1): 2}, {("raw", 0): 5}]
    assert [len(w.entries) for w in writer.writes] == [3, 2, 2]
    assert writer.store[b"k0-4"] == b"v4"
    assert writer.events[0] == "start" and writer.events[-1] == "close"
    assert reader.closed


async def test_retriable_write_is_retried_and_committed_once() -> None:
    reader = MemoryReader([records(0, 0, 4)])
    writer = MemoryWriter(failures=[retriable(), retriable()])
    await run(make_runner(pipeline(), reader, writer))
    assert reader.commits == [{("raw", 0): 4}]
    assert len(writer.writes) == 1


async def test_fatal_write_commits_nothing() -> None:
    reader = MemoryReader([records(0, 0, 2), records(0, 2, 2)])
    writer = MemoryWriter(failures=[FatalError("bad credentials")])
    with pytest.raises(FatalError, match="bad credentials"):
        await run(make_runner(pipeline(), reader, writer))
    assert reader.commits == []
    assert reader.closed


async def test_retries_exhausted_become_fatal_without_commit() -> None:
    reader = MemoryReader([records(0, 0, 2)])
    writer = MemoryWriter(failures=[retriable()] * 5)
    runner = make_runner(pipeline(RETRY_MAX_ATTEMPTS="3"), reader, writer)
    with pytest.raises(FatalError, match="after 3 attempts"):
        await run(runner)
    assert reader.commits == []


async def test_stop_while_retrying_abandons_the_batch_uncommitted() -> None:
    reader = MemoryReader([records(0, 0, 2)])
    writer = MemoryWriter(failures=[retriable()] * 1000)
    runner = make_runner(
        pipeline(RETRY_INITIAL_MS="50", RETRY_MAX_MS="50"), reader, writer, until_caught_up=False
    )
    task = asyncio.create_task(runner.run())

    async def until_retrying() -> None:
        while len(writer.failures) > 995:
            await asyncio.sleep(0.005)

    await asyncio.wait_for(until_retrying(), timeout=5)
    runner.stop()
    await asyncio.wait_for(task, timeout=5)
    assert reader.commits == []
    assert reader.closed


async def test_on_error_fail_stops_at_poison_without_committing_it() -> None:
    env = {
        "TOPIC_SCHEMAS": "raw=edge.v1.ZoneSettingsChanged",
        "PROTO_MODULES": "transforms.proto.edge",
        "ON_ERROR": "fail",
    }
    good = records(0, 0, 1)
    bad = [Record("raw", 0, 1, b"k", b"\xff\xff\xff")]
    reader = MemoryReader([[Record("raw", 0, 0, b"k", b"")], bad, good])
    writer = MemoryWriter()
    with pytest.raises(FatalError, match=r"decode failed for raw\[0\]@1"):
        await run(make_runner(pipeline(**env), reader, writer))
    assert reader.committed == {("raw", 0): 1}


async def test_revocation_waits_for_the_batch_in_flight() -> None:
    gate = asyncio.Event()
    order: list[str] = []

    class SlowWriter(MemoryWriter):
        async def write(self, batch):  # type: ignore[no-untyped-def]
            order.append("write-start")
            await gate.wait()
            await super().write(batch)
            order.append("write-end")

    reader = MemoryReader([records(0, 0, 2)])
    writer = SlowWriter()
    runner = make_runner(pipeline(), reader, writer)
    task = asyncio.create_task(runner.run())
    while order != ["write-start"]:
        await asyncio.sleep(0.001)
    assert reader.on_revoke is not None
    revoke = asyncio.create_task(reader.on_revoke([("raw", 0)]))
    for _ in range(20):  # let every ready task run; the revocation must still be waiting
        await asyncio.sleep(0)
    assert not revoke.done(), "revocation must wait for write and commit"
    gate.set()
    await asyncio.wait_for(revoke, timeout=5)
    order.append("revoked")
    await asyncio.wait_for(task, timeout=5)
    assert order == ["write-start", "write-end", "revoked"]
    assert reader.commits == [{("raw", 0): 2}]


EDGE = {
    "TOPIC_SCHEMAS": "raw=edge.v1.ZoneSettingsChanged",
    "PROTO_MODULES": "transforms.proto.edge",
}


async def test_poison_goes_to_dead_letters_and_the_rest_is_written() -> None:
    from transforms.proto.edge import ZoneSettingsChanged

    good = ZoneSettingsChanged(zone_id="z1").SerializeToString()
    batch = [
        Record("raw", 0, 0, b"a", good),
        Record("raw", 0, 1, b"b", b"\xff\xff\xff", (("trace", b"t1"),), 123),
        Record("raw", 0, 2, b"c", good),
    ]
    reader, writer, letters = MemoryReader([batch]), MemoryWriter(), MemoryDeadLetters()
    await run(make_runner(pipeline(**EDGE), reader, writer, letters=letters))
    assert set(writer.store) == {b"a", b"c"}
    (letter,) = letters.letters
    assert (letter.record.offset, letter.stage, letter.error_class) == (1, "decode", "DecodeError")
    headers = dict(letter.headers("unit"))
    assert headers["trace"] == b"t1"
    assert headers["dlq.original.offset"] == b"1" and headers["dlq.original.topic"] == b"raw"
    assert headers["dlq.original.timestamp"] == b"123" and headers["dlq.connector"] == b"unit"
    assert reader.commits == [{("raw", 0): 3}]


async def test_writer_rejection_dead_letters_that_record_only() -> None:
    from connectors import PoisonError

    batch = records(0, 0, 3)

    class Picky(MemoryWriter):
        async def write(self, wb):  # type: ignore[no-untyped-def]
            for entry in wb.entries:
                if entry.key == b"k0-1":
                    raise PoisonError("write", "422 unprocessable", entry.source)
            await super().write(wb)

    reader, writer, letters = MemoryReader([batch]), Picky(), MemoryDeadLetters()
    await run(make_runner(pipeline(), reader, writer, letters=letters))
    assert set(writer.store) == {b"k0-0", b"k0-2"}
    assert [(lt.record.offset, lt.stage) for lt in letters.letters] == [(1, "write")]
    assert reader.commits == [{("raw", 0): 3}]


async def test_breaker_stops_instead_of_dead_lettering_a_topic() -> None:
    bad = [Record("raw", 0, o, b"k", b"\xff\xff") for o in range(200)]
    reader, writer, letters = MemoryReader([bad]), MemoryWriter(), MemoryDeadLetters()
    env = {**EDGE, "DLQ_MAX_RATIO": "0.5", "DLQ_WINDOW": "100"}
    with pytest.raises(FatalError, match="more than 50% of the last 100 records are poison"):
        await run(make_runner(pipeline(**env), reader, writer, letters=letters))
    assert reader.commits == [] and letters.letters == [] and writer.writes == []


async def test_retrying_keeps_polling_paused_then_resumes() -> None:
    reader = MemoryReader([records(0, 0, 2)])
    writer = MemoryWriter(failures=[retriable(), retriable(), retriable()])
    runner = make_runner(pipeline(RETRY_INITIAL_MS="20", RETRY_MAX_MS="20"), reader, writer)
    await run(runner)
    assert reader.keepalives >= 1 and reader.resumes == 1
    assert reader.commits == [{("raw", 0): 2}]

"""The runner's delivery rules, against in-memory fakes of the reader and writer."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
import weakref

import pytest

from connectors import FatalError, Record
from connectors.config.pipeline import Pipeline, resolve
from connectors.core.records import Batch, WriteBatch
from connectors.runtime.runner import Runner
from connectors.runtime.shutdown import Watchdog
from connectors.runtime.stopping import run_until_stopped
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

    async def until_writing() -> None:
        while order != ["write-start"]:
            await asyncio.sleep(0.001)

    await asyncio.wait_for(until_writing(), timeout=10)
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


# -- start: retried like everything else ---------------------------------------------------


@pytest.mark.parametrize("component", ["writer", "dead_letters", "reader"])
async def test_a_retriable_start_is_retried_then_the_run_goes_on(component: str) -> None:
    down = [retriable("not up yet"), retriable("not up yet")]
    reader = MemoryReader([records(0, 0, 2)], start_failures=down if component == "reader" else ())
    writer = MemoryWriter(start_failures=down if component == "writer" else ())
    letters = MemoryDeadLetters(start_failures=down if component == "dead_letters" else ())
    await run(make_runner(pipeline(), reader, writer, letters=letters))
    assert reader.commits == [{("raw", 0): 2}]
    assert writer.events[-1] == "close"


async def test_a_start_that_keeps_failing_stops_after_retry_max_attempts() -> None:
    reader = MemoryReader([records(0, 0, 2)])
    writer = MemoryWriter(start_failures=[retriable("redis down")] * 5)
    with pytest.raises(FatalError, match=r"writer.start still failing after 3 attempts: redis"):
        await run(make_runner(pipeline(RETRY_MAX_ATTEMPTS="3"), reader, writer))
    assert reader.on_revoke is None and reader.commits == []
    assert writer.events == ["start", "start", "start", "close"], "closed after a failed start"


async def test_stop_while_waiting_for_a_start_ends_the_run_normally() -> None:
    reader = MemoryReader([records(0, 0, 2)])
    writer = MemoryWriter(start_failures=[retriable()] * 1000)
    runner = make_runner(
        pipeline(RETRY_INITIAL_MS="50", RETRY_MAX_MS="50"), reader, writer, until_caught_up=False
    )
    task = asyncio.create_task(runner.run())

    async def until_retrying() -> None:
        while len(writer.start_failures) > 998:
            await asyncio.sleep(0.005)

    await asyncio.wait_for(until_retrying(), timeout=10)
    runner.stop()
    await asyncio.wait_for(task, timeout=5)
    assert reader.on_revoke is None and reader.commits == [] and writer.writes == []


# -- what the runner is doing ----------------------------------------------------------------


async def test_activity_names_each_stage_of_the_batch_in_flight_and_none_between() -> None:
    seen: list[tuple[str, str | None]] = []
    holder: list[Runner] = []

    def look(where: str) -> None:
        stage, since = holder[0].activity()
        assert since <= time.monotonic()
        seen.append((where, stage))

    class Watched(MemoryReader):
        async def batch(self):  # type: ignore[no-untyped-def]
            look("poll")
            return await super().batch()

        async def commit(self, offsets):  # type: ignore[no-untyped-def]
            look("commit")
            await super().commit(offsets)

    class Writer(MemoryWriter):
        async def write(self, batch):  # type: ignore[no-untyped-def]
            look("write")
            await super().write(batch)

    class Letters(MemoryDeadLetters):
        async def send(self, letters):  # type: ignore[no-untyped-def]
            look("dead_letter")
            await super().send(letters)

    pipe = pipeline(**EDGE)
    bad = [Record("raw", 0, 0, b"k", b"\xff\xff")]
    runner = make_runner(pipe, Watched([bad]), Writer(), letters=Letters())
    holder.append(runner)
    assert runner.activity()[0] is None
    await run(runner)
    assert seen == [
        ("poll", None),
        ("write", "write"),
        ("dead_letter", "dead_letter"),
        ("commit", "commit"),
    ]
    assert runner.activity()[0] is None


async def test_activity_shows_the_transform_while_it_runs() -> None:
    from dataclasses import replace

    from connectors.core.transform import Chain

    seen: list[str | None] = []
    holder: list[Runner] = []

    def watch(message: object, ctx: object) -> object:
        seen.append(holder[0].activity()[0])
        return message

    pipe = replace(pipeline(), chain=Chain((("watch", watch),)))
    runner = make_runner(pipe, MemoryReader([records(0, 0, 3)]), MemoryWriter())
    holder.append(runner)
    await run(runner)
    assert seen == ["transform"] * 3, "one update per stage and batch, read per record here"


# -- abandoning a batch -----------------------------------------------------------------------


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def test_a_write_hung_past_the_grace_is_abandoned_uncommitted_without_an_error() -> None:
    class Hung(MemoryWriter):
        async def write(self, batch):  # type: ignore[no-untyped-def]
            self.events.append("hung")
            await asyncio.Event().wait()

    reader, writer = MemoryReader([records(0, 0, 2)]), Hung()
    runner = make_runner(pipeline(), reader, writer, until_caught_up=False)
    task = asyncio.create_task(run_until_stopped(runner, grace_s=0.1))

    async def until_hung() -> None:
        while "hung" not in writer.events:
            await asyncio.sleep(0.005)

    await asyncio.wait_for(until_hung(), timeout=10)
    logged = Lines()
    logging.getLogger("connectors.runtime").addHandler(logged)
    try:
        runner.stop()
        await asyncio.wait_for(task, timeout=5)  # returns: no CancelledError, no exception
    finally:
        logging.getLogger("connectors.runtime").removeHandler(logged)
    assert reader.commits == [] and reader.closed and writer.events[-1] == "close"
    abandoned = [line for line in logged.lines if "abandoned" in line]
    assert len(abandoned) == 1 and "(in write for" in abandoned[0], abandoned


def test_the_watchdog_leaves_with_0_after_the_grace_when_the_loop_cannot_answer() -> None:
    """The main thread is held (as by a hung transform): the stop request cannot run, so the
    watchdog thread leaves, with exit code 0, once grace and margin have passed."""
    left = threading.Event()
    codes: list[int] = []
    stops: list[int] = []

    def leave(code: int) -> None:
        codes.append(code)
        left.set()

    before = signal.getsignal(signal.SIGTERM)
    loop = asyncio.new_event_loop()
    watchdog = Watchdog(0.2, margin_s=0.1, leave=leave)
    watchdog.install(lambda: stops.append(1), loop, lambda: ("transform", time.monotonic() - 5))
    try:
        signalled = time.monotonic()
        os.kill(os.getpid(), signal.SIGTERM)
        while not left.is_set() and time.monotonic() - signalled < 5:
            pass  # busy, as a transform in a loop
        took = time.monotonic() - signalled
    finally:
        watchdog.close()
        loop.close()
    assert codes == [0] and stops == [], "the loop never ran the stop request"
    assert 0.3 <= took < 2.0, took
    assert signal.getsignal(signal.SIGTERM) is before, "handlers restored"


def test_the_watchdog_stands_down_when_the_process_leaves_in_time() -> None:
    codes: list[int] = []
    loop = asyncio.new_event_loop()
    watchdog = Watchdog(0.1, margin_s=0.05, leave=codes.append)
    watchdog.install(loop.stop, loop)
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        loop.run_forever()  # the stop request arrives through the loop and ends it
    finally:
        watchdog.close()
        loop.close()
    assert watchdog._thread is not None and not watchdog._thread.is_alive(), "stood down"
    assert codes == []


# -- metrics ---------------------------------------------------------------------------------


async def test_metrics_are_recorded_per_batch_with_the_connector_labels() -> None:
    from connectors.observability.metrics import REGISTRY

    def value(name: str, **labels: str) -> float:
        found = REGISTRY.get_sample_value(name, {"connector": "metered", **labels})
        return found or 0.0

    before = value("connector_stage_seconds_count", stage="write")
    bad = Record("raw", 1, 0, b"k", b"\xff\xff")
    reader = MemoryReader([records(0, 0, 3), [bad]])
    env = {**EDGE, "CONNECTOR_NAME": "metered"}
    letters = MemoryDeadLetters()
    await run(make_runner(pipeline(**env), reader, MemoryWriter(), letters=letters))
    assert value("connector_stage_seconds_count", stage="write") == before + 2
    assert value("connector_records_in_total", topic="raw") >= 4
    assert value("connector_commits_total") >= 2
    assert value("connector_records_dead_lettered_total", topic="raw", reason="decode") >= 1
    assert value("connector_last_commit_timestamp_seconds", topic="raw", partition="1") > 0


class _Tracked(list[Record]):
    """A batch's records, as a list a weak reference can follow."""


class _Watching(MemoryReader):
    """Notes, at each poll, whether the records of the batch it handed out last are
    still alive somewhere."""

    def __init__(self, batches: list[list[Record]]) -> None:
        super().__init__(batches)
        self.alive_at_poll: list[bool] = []
        self._last: weakref.ref[_Tracked] | None = None

    async def batch(self) -> Batch:
        if self._last is not None:
            self.alive_at_poll.append(self._last() is not None)
            self._last = None
        got = await super().batch()
        if not got.records:
            return got
        held = _Tracked(got.records)
        self._last = weakref.ref(held)
        return Batch(held, got.topic_ids)


class _Forgetful:
    """A writer that keeps nothing of what it is given, as a real one."""

    def __init__(self) -> None:
        self.entries = 0

    async def start(self) -> None: ...

    async def write(self, batch: WriteBatch) -> None:
        self.entries += len(batch.entries)

    async def check(self) -> None: ...

    async def close(self) -> None: ...


async def test_a_written_batch_is_let_go_before_the_next_poll() -> None:
    """Peak memory: while the next batch is fetched (the longest wait of the loop) the
    batch before, written and committed, holds none of its records any more."""
    reader, writer = _Watching([records(0, 0, 3), records(0, 3, 3), records(1, 0, 2)]), _Forgetful()
    runner = Runner(
        pipeline(),
        until_caught_up=True,
        reader=reader,
        writer=writer,
        dead_letters=MemoryDeadLetters(),
    )
    await run(runner)
    assert writer.entries == 8
    assert reader.alive_at_poll[:2] == [False, False]
    assert not any(reader.alive_at_poll)

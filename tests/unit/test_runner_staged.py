"""The runner with a writer that stages its writes (`StagesWrites`, the LMDB store).

A staged batch's last write step runs while the next batch is read and transformed; its
offsets are committed only once that step ended, before anything more is written. A step
that fails stops the run with nothing of its batch committed; a failing poll or the end of
the run lets the batch before, already stored, be committed first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import pytest

from connectors import Batch, FatalError, Record, RetriableError, TopicPartition, WriteBatch
from connectors.core.writer import stager
from connectors.runtime.runner import Runner
from connectors.testing.fakes import MemoryDeadLetters, MemoryReader, MemoryWriter
from tests.unit.test_runner import pipeline, records

#: How long a staged step runs when no poll ends it first.
STEP_S = 0.05


class StagingWriter(MemoryWriter):
    """Stages a batch at once; its entries reach the target when the step ends: when the
    reader is next polled (so that the test sees what ran in between), or `STEP_S` later
    when nothing is polled (the step's own duration), or with the error `fail_step` gives
    for that batch number (1-based)."""

    def __init__(self, events: list[str], fail_step: dict[int, Exception] | None = None) -> None:
        super().__init__()
        self.log = events
        self.steps: list[asyncio.Future[None]] = []
        self._fail = fail_step or {}

    async def stage(self, batch: WriteBatch) -> Awaitable[None]:
        number = len(self.steps) + 1
        self.log.append(f"stage {number}")
        step: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.steps.append(step)

        def ended(done: asyncio.Future[None]) -> None:
            if not done.cancelled() and done.exception() is None:
                for entry in batch.entries:
                    self.target.apply(entry)

        step.add_done_callback(ended)
        asyncio.get_running_loop().call_later(STEP_S, self.end_steps)
        return step

    def end_steps(self) -> None:
        for number, step in enumerate(self.steps, 1):
            if not step.done():
                failure = self._fail.get(number)
                if failure is None:
                    self.log.append(f"stored {number}")
                    step.set_result(None)
                else:
                    self.log.append(f"failed {number}")
                    step.set_exception(failure)


class LoggingReader(MemoryReader):
    def __init__(
        self,
        batches: Sequence[Sequence[Record]],
        events: list[str],
        writer: StagingWriter,
        fail_poll: int | None = None,
        revoke_after: int | None = None,
    ) -> None:
        super().__init__(batches, revoke_after=revoke_after)
        self.log = events
        self.writer = writer
        self._polls = 0
        self._fail_poll = fail_poll

    async def start(self, on_revoke: Callable[[list[TopicPartition]], Awaitable[None]]) -> None:
        async def logged(partitions: list[TopicPartition]) -> None:
            await on_revoke(partitions)
            self.log.append("revoked")

        await super().start(logged)

    async def batch(self) -> Batch:
        self._polls += 1
        if self._polls == self._fail_poll:
            self.log.append("poll failed")
            raise FatalError("the topic was deleted")
        got = await super().batch()
        if got.records:
            self.log.append(f"read {self._polls}")
        await asyncio.sleep(0)  # the step ends while the runner is on the next batch
        self.writer.end_steps()
        return got

    async def commit(self, offsets: dict) -> None:  # type: ignore[override]
        self.log.append(f"commit {dict(offsets)}")
        await super().commit(offsets)


def runner_for(reader: MemoryReader, writer: MemoryWriter) -> Runner:
    return Runner(
        pipeline(),
        until_caught_up=True,
        reader=reader,
        writer=writer,
        dead_letters=MemoryDeadLetters(),
    )


async def test_the_next_batch_is_read_before_the_step_ends_and_offsets_follow_it() -> None:
    events: list[str] = []
    writer = StagingWriter(events)
    assert stager(writer) is writer
    reader = LoggingReader([records(0, 0, 3), records(0, 3, 2)], events, writer)
    await asyncio.wait_for(runner_for(reader, writer).run(), timeout=10)
    assert events == [
        "read 1",
        "stage 1",
        "read 2",  # batch 2 read (and transformed) while batch 1's step still ran
        "stored 1",
        "commit {('raw', 0): 3}",  # batch 1 committed only after its step, before stage 2
        "stage 2",
        "stored 2",
        "commit {('raw', 0): 5}",  # the last one at the end of the run
    ]
    assert writer.store == {f"k0-{o}".encode(): f"v{o}".encode() for o in range(5)}


async def test_a_failed_step_stops_the_run_with_nothing_of_its_batch_committed() -> None:
    events: list[str] = []
    writer = StagingWriter(events, fail_step={2: RetriableError("EIO on fsync")})
    batches = [records(0, 0, 3), records(0, 3, 2), records(0, 5, 2)]
    reader = LoggingReader(batches, events, writer)
    with pytest.raises(FatalError, match="EIO on fsync") as caught:
        await asyncio.wait_for(runner_for(reader, writer).run(), timeout=10)
    assert "nothing of the batch was stored or committed" in str(caught.value)
    assert reader.commits == [{("raw", 0): 3}]  # batch 1 only: 2 is read again at restart
    assert "stage 3" not in events  # nothing written after the failed step
    assert set(writer.store) == {b"k0-0", b"k0-1", b"k0-2"}


async def test_a_failing_poll_lets_the_batch_before_be_committed() -> None:
    events: list[str] = []
    writer = StagingWriter(events)
    reader = LoggingReader([records(0, 0, 3), records(0, 3, 2)], events, writer, fail_poll=2)
    with pytest.raises(FatalError, match="the topic was deleted"):
        await asyncio.wait_for(runner_for(reader, writer).run(), timeout=10)
    # Batch 1 was stored: it is committed before the run stops, not read again.
    assert events[-3:] == ["poll failed", "stored 1", "commit {('raw', 0): 3}"]
    assert reader.commits == [{("raw", 0): 3}]


async def test_a_revocation_commits_the_staged_batch_before_partitions_go() -> None:
    events: list[str] = []
    writer = StagingWriter(events)
    batches = [records(0, 0, 3), records(0, 3, 2)]
    reader = LoggingReader(batches, events, writer, revoke_after=1)
    await asyncio.wait_for(runner_for(reader, writer).run(), timeout=10)
    # Revoked while batch 1's step ran: the revocation waited for it and committed it.
    assert events[:5] == ["read 1", "stage 1", "stored 1", "commit {('raw', 0): 3}", "revoked"]

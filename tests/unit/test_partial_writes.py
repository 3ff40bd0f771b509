"""The partial-success contract: what a writer reports stored is not handed to it again."""

from __future__ import annotations

import asyncio

import pytest

from connectors import FatalError, PoisonError, RetriableError, WriteBatch
from connectors.testing.fakes import MemoryDeadLetters, MemoryReader, MemoryWriter
from tests.unit.test_runner import make_runner, pipeline, records


class Flaky(MemoryWriter):
    """Stores the entries at even positions of each call, then fails for the others
    (as a writer whose requests half succeeded), `rounds` times; then stores everything."""

    def __init__(self, rounds: int, error: type[Exception] = RetriableError) -> None:
        super().__init__()
        self.rounds = rounds
        self.handed: list[list[bytes | None]] = []

    async def write(self, batch: WriteBatch) -> None:
        self.handed.append([e.key for e in batch.entries])
        if self.rounds == 0 or len(batch.entries) <= 1:
            await super().write(batch)
            return
        self.rounds -= 1
        stored = [i for i in range(len(batch.entries)) if i % 2 == 0]
        for i in stored:
            self.target.apply(batch.entries[i])
        raise RetriableError("half of the requests failed", stored=stored)


async def test_a_retry_hands_the_writer_only_what_it_did_not_store() -> None:
    reader, writer = MemoryReader([records(0, 0, 8)]), Flaky(rounds=2)
    await asyncio.wait_for(make_runner(pipeline(), reader, writer).run(), 10)
    assert writer.handed == [
        [b"k0-0", b"k0-1", b"k0-2", b"k0-3", b"k0-4", b"k0-5", b"k0-6", b"k0-7"],
        [b"k0-1", b"k0-3", b"k0-5", b"k0-7"],
        [b"k0-3", b"k0-7"],
    ]
    assert set(writer.store) == {f"k0-{o}".encode() for o in range(8)}
    assert reader.commits == [{("raw", 0): 8}]


async def test_progress_restarts_the_attempt_count() -> None:
    # Two attempts allowed, five failing rounds: each round stored something, so the
    # count starts again and the batch completes.
    reader, writer = MemoryReader([records(0, 0, 64)]), Flaky(rounds=5)
    runner = make_runner(pipeline(RETRY_MAX_ATTEMPTS="2"), reader, writer)
    await asyncio.wait_for(runner.run(), 10)
    assert len(writer.store) == 64 and reader.commits == [{("raw", 0): 64}]
    assert sum(len(h) for h in writer.handed) == 64 + 32 + 16 + 8 + 4 + 2


async def test_nothing_is_committed_while_part_of_the_batch_is_unstored() -> None:
    class Stuck(MemoryWriter):
        async def write(self, batch: WriteBatch) -> None:
            if len(batch.entries) > 1:  # the first passes, the last never does
                self.target.apply(batch.entries[0])
                raise RetriableError("the rest failed", stored=[0])
            raise RetriableError("the last one failed")

    reader, writer = MemoryReader([records(0, 0, 3)]), Stuck()
    runner = make_runner(pipeline(RETRY_MAX_ATTEMPTS="2"), reader, writer)
    with pytest.raises(FatalError, match="still failing after 2 attempts"):
        await asyncio.wait_for(runner.run(), 10)
    assert set(writer.store) == {b"k0-0", b"k0-1"}
    assert reader.commits == []


async def test_a_rejection_with_stored_siblings_dead_letters_only_the_rejected() -> None:
    class Rejects(MemoryWriter):
        def __init__(self) -> None:
            super().__init__()
            self.handed: list[list[bytes | None]] = []

        async def write(self, batch: WriteBatch) -> None:
            self.handed.append([e.key for e in batch.entries])
            keys = [e.key for e in batch.entries]
            if b"k0-2" in keys:
                bad = keys.index(b"k0-2")
                stored = [i for i in range(len(keys)) if i < bad]
                for i in stored:
                    self.target.apply(batch.entries[i])
                raise PoisonError("write", "422", batch.entries[bad].source, stored=stored)
            await super().write(batch)

    reader, writer, letters = MemoryReader([records(0, 0, 5)]), Rejects(), MemoryDeadLetters()
    await asyncio.wait_for(make_runner(pipeline(), reader, writer, letters=letters).run(), 10)
    assert writer.handed[1] == [b"k0-3", b"k0-4"]
    assert [lt.record.offset for lt in letters.letters] == [2]
    assert set(writer.store) == {b"k0-0", b"k0-1", b"k0-3", b"k0-4"}
    assert reader.commits == [{("raw", 0): 5}]

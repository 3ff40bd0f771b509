"""In-memory fakes of our own reader and writer contracts, for unit tests of the runner."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from connectors import Batch, Record, RetriableError, TopicPartition, WriteBatch
from connectors.core.dead_letters import DeadLetter
from connectors.core.reader import OnRevoke


class MemoryReader:
    """Serves pre-made batches from assigned partitions; records every commit."""

    def __init__(self, batches: list[list[Record]]) -> None:
        self._batches = list(batches)
        self.commits: list[dict[TopicPartition, int]] = []
        self._positions: dict[TopicPartition, int] = {}
        self._ends: dict[TopicPartition, int] = {}
        for batch in batches:
            for r in batch:
                tp = (r.topic, r.partition)
                self._ends[tp] = max(self._ends.get(tp, 0), r.offset + 1)
                self._positions.setdefault(tp, 0)
        self.on_revoke: OnRevoke | None = None
        self.closed = False
        self.keepalives = 0
        self.resumes = 0

    async def start(self, on_revoke: OnRevoke) -> None:
        self.on_revoke = on_revoke

    async def batch(self) -> Batch:
        if not self._batches:
            return Batch(())
        records = self._batches.pop(0)
        for r in records:
            self._positions[(r.topic, r.partition)] = r.offset + 1
        return Batch(records)

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))

    def assignment(self) -> set[TopicPartition]:
        return set(self._ends)

    async def end_offsets(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self._ends[tp] for tp in partitions}

    async def positions(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self._positions[tp] for tp in partitions}

    async def keepalive(self, seconds: float) -> None:
        self.keepalives += 1
        await asyncio.sleep(seconds)

    def resume(self) -> None:
        self.resumes += 1

    async def close(self) -> None:
        self.closed = True

    @property
    def committed(self) -> dict[TopicPartition, int]:
        merged: dict[TopicPartition, int] = {}
        for commit in self.commits:
            merged.update(commit)
        return merged


class MemoryWriter:
    """Stores entries in a dict; can be told to fail a number of times first."""

    def __init__(self, failures: list[Exception] | None = None) -> None:
        self.store: dict[bytes | None, bytes | None] = {}
        self.writes: list[WriteBatch] = []
        self.failures = list(failures or [])
        self.events: list[str] = []

    async def start(self) -> None:
        self.events.append("start")

    async def write(self, batch: WriteBatch) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.writes.append(batch)
        for entry in batch.entries:
            if entry.value is None:
                self.store.pop(entry.key, None)
            else:
                self.store[entry.key] = entry.value
        self.events.append(f"write:{len(batch.entries)}")

    async def check(self) -> None:
        return None

    async def close(self) -> None:
        self.events.append("close")


class MemoryDeadLetters:
    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    async def start(self) -> None:
        return None

    async def send(self, letters: Sequence[DeadLetter]) -> None:
        self.letters.extend(letters)

    async def close(self) -> None:
        return None


def retriable(message: str = "down") -> RetriableError:
    return RetriableError(message)

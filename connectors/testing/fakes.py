"""In-memory fakes of the reader, writer and dead-letter contracts, for tests of the runner
and of code built on it.

`MemoryWriter` is a writer like any other: it passes the writer conformance kit
(`connectors.testing.conformance`) through `MemoryTarget`, as the real writers do against
their servers, so a runner test that uses it relies on the same contract. Each fake can be
told to fail: a list of exceptions is raised, one per call, before calls succeed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence

from connectors.core.dead_letters import DeadLetter
from connectors.core.errors import PoisonError, RetriableError
from connectors.core.reader import OnRevoke
from connectors.core.records import Batch, Entry, Record, TopicPartition, WriteBatch
from connectors.core.writer import FlushPolicy, Writer
from connectors.testing.conformance import Delivered

__all__ = [
    "MemoryDeadLetters",
    "MemoryReader",
    "MemoryTarget",
    "MemoryWriter",
    "retriable",
]


def _raise_next(failures: list[Exception]) -> None:
    if failures:
        raise failures.pop(0)


class MemoryReader:
    """Serves pre-made batches from assigned partitions; records every commit.

    `revoke_after=n` revokes every partition (awaiting the runner's `on_revoke`, as a
    consumer does inside its poll) when the batch after the `n`-th is asked for.
    """

    def __init__(
        self,
        batches: Iterable[Sequence[Record]],
        *,
        start_failures: Iterable[Exception] = (),
        revoke_after: int | None = None,
    ) -> None:
        self._batches = [list(batch) for batch in batches]
        self.commits: list[dict[TopicPartition, int]] = []
        self._positions: dict[TopicPartition, int] = {}
        self._ends: dict[TopicPartition, int] = {}
        for batch in self._batches:
            for r in batch:
                tp = (r.topic, r.partition)
                self._ends[tp] = max(self._ends.get(tp, 0), r.offset + 1)
                self._positions.setdefault(tp, 0)
        self.start_failures = list(start_failures)
        self.on_revoke: OnRevoke | None = None
        self.revoked: list[list[TopicPartition]] = []
        self._revoke_after = revoke_after
        self._served = 0
        self.closed = False
        self.keepalives = 0
        self.resumes = 0

    async def start(self, on_revoke: OnRevoke) -> None:
        _raise_next(self.start_failures)
        self.on_revoke = on_revoke

    async def batch(self) -> Batch:
        if self._revoke_after is not None and self._served == self._revoke_after:
            self._revoke_after = None
            partitions = sorted(self._ends)
            if self.on_revoke is not None:
                await self.on_revoke(partitions)
            self.revoked.append(partitions)
        if not self._batches:
            await asyncio.sleep(0)  # an empty poll still yields, as a consumer's does
            return Batch(())
        records = self._batches.pop(0)
        self._served += 1
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


class MemoryTarget:
    """A key-value store in a dict, shared by the writers built for it (a restarted writer
    sees what an earlier one stored), with each key's source position kept beside it."""

    def __init__(self) -> None:
        self.values: dict[bytes | None, bytes] = {}
        self.positions: dict[bytes | None, tuple[str, int, int]] = {}

    def writer(self) -> Writer:
        return MemoryWriter(target=self)

    async def read(self) -> Sequence[Delivered]:
        return [
            Delivered((key or b"").hex(), key, value)
            for key, value in sorted(self.values.items(), key=lambda kv: kv[0] or b"")
        ]

    def apply(self, entry: Entry) -> None:
        """Store one entry unless the key holds a later offset of the same partition: a
        replay never brings an older value back (positions across partitions cannot be
        ordered; there the last write wins)."""
        source = entry.source
        stored = self.positions.get(entry.key)
        if stored is not None and stored[:2] == (source.topic, source.partition):
            if stored[2] > source.offset:
                return
        self.positions[entry.key] = (source.topic, source.partition, source.offset)
        if entry.value is None:
            self.values.pop(entry.key, None)
        else:
            self.values[entry.key] = entry.value


class MemoryWriter:
    """Stores entries in a `MemoryTarget`; can be told to fail first (`failures`, one per
    `write`; `start_failures`, one per `start`), to reject entries as poison (`reject`
    returns a reason for an entry it refuses), and to fail partway (`fail_partway=n`: the
    next write stores its first n entries, then raises RetriableError reporting them in
    `stored`, as a writer of several requests or objects does)."""

    def __init__(
        self,
        failures: Iterable[Exception] | None = None,
        *,
        target: MemoryTarget | None = None,
        start_failures: Iterable[Exception] = (),
        reject: Callable[[Entry], str | None] | None = None,
        flush_policy: FlushPolicy | None = None,
        fail_partway: int | None = None,
    ) -> None:
        self.target = target if target is not None else MemoryTarget()
        self.writes: list[WriteBatch] = []
        self.failures = list(failures or [])
        self.start_failures = list(start_failures)
        self.events: list[str] = []
        self.flush_policy = flush_policy
        self._reject = reject
        self._fail_partway = fail_partway

    @property
    def store(self) -> dict[bytes | None, bytes]:
        return self.target.values

    async def start(self) -> None:
        self.events.append("start")
        _raise_next(self.start_failures)

    async def write(self, batch: WriteBatch) -> None:
        _raise_next(self.failures)
        if self._reject is not None:
            for entry in batch.entries:
                reason = self._reject(entry)
                if reason is not None:
                    raise PoisonError("write", reason, entry.source)
        if self._fail_partway is not None:
            count, self._fail_partway = self._fail_partway, None
            for entry in batch.entries[:count]:
                self.target.apply(entry)
            raise RetriableError("failed partway", stored=range(count))
        self.writes.append(batch)
        for entry in batch.entries:
            self.target.apply(entry)
        self.events.append(f"write:{len(batch.entries)}")

    async def check(self) -> None:
        return None

    async def close(self) -> None:
        self.events.append("close")


class MemoryDeadLetters:
    """Keeps every dead letter sent; `failures` are raised first, one per `send`."""

    def __init__(
        self,
        failures: Iterable[Exception] = (),
        *,
        start_failures: Iterable[Exception] = (),
    ) -> None:
        self.letters: list[DeadLetter] = []
        self.failures = list(failures)
        self.start_failures = list(start_failures)

    async def start(self) -> None:
        _raise_next(self.start_failures)

    async def send(self, letters: Sequence[DeadLetter]) -> None:
        _raise_next(self.failures)
        self.letters.extend(letters)

    async def close(self) -> None:
        return None


def retriable(message: str = "down") -> RetriableError:
    return RetriableError(message)

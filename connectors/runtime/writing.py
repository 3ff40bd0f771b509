"""The write stage: a batch's entries handed to the writer until every one is stored.

Retried with the runner's backoff (`Retrier`) while the writer fails retriably; a record the
writer rejects for good (`PoisonError`) is judged (dead letter, or the loop stops under
`ON_ERROR=fail`) and the rest written without it; what a writer reports as stored before a
failure (`stored` of its error) is not handed to it again, so each attempt gets only the
rest. A writer that stages its writes (`StagesWrites`) is asked to stage instead, and its
last step is handed back to the runner to await before it commits.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass

from connectors.core.dead_letters import DeadLetter
from connectors.core.errors import FatalError, PoisonError, RetriableError
from connectors.core.records import Record, TopicPartition, WriteBatch
from connectors.core.writer import Writer, stager
from connectors.observability import tracing
from connectors.runtime.instruments import Instruments
from connectors.runtime.poison import Judge
from connectors.runtime.retry import Retrier


@dataclass(slots=True)
class Written:
    """A batch written, or staged with its writer's last step (`durable`) still running:
    what committing it needs, and nothing of its records, so that one batch is alive at
    a time."""

    durable: Awaitable[None] | None
    offsets: dict[TopicPartition, int]
    records: int
    written: int
    letters: list[DeadLetter]
    trace: tracing.BatchTrace
    write_s: float


def _position(record: Record) -> tuple[str, int, int]:
    return (record.topic, record.partition, record.offset)


def _unstored(write_batch: WriteBatch, stored: frozenset[int]) -> WriteBatch:
    """`write_batch` without the entries at the indices a writer reported stored."""
    entries = tuple(e for i, e in enumerate(write_batch.entries) if i not in stored)
    return WriteBatch(write_batch.batch, entries)


class WriteStage:
    def __init__(
        self, writer: Writer, retry: Retrier, judge: Judge, instruments: Instruments
    ) -> None:
        self._writer = writer
        self._stager = stager(writer)
        self._retry = retry
        self._judge = judge
        self._in_flight = instruments.in_flight

    async def write(
        self, write_batch: WriteBatch, letters: list[DeadLetter]
    ) -> tuple[int, Awaitable[None] | None]:
        """Write until every entry is stored (or staged); returns how many were, and the
        writer's last step when it stages (None when the entries are stored already).
        Records the writer rejects for good join `letters`."""
        in_flight = self._in_flight
        total = len(write_batch.entries)
        rejected = 0
        pending = write_batch
        writer, stager = self._writer, self._stager
        durable: Awaitable[None] | None = None

        async def attempt() -> None:
            nonlocal pending, durable
            in_flight.set(len(pending.entries))
            try:
                if stager is None:
                    await writer.write(pending)
                else:
                    durable = await stager.stage(pending)
            except (RetriableError, PoisonError) as exc:
                if exc.stored:
                    pending = _unstored(pending, exc.stored)
                raise

        try:
            while True:
                try:
                    await self._retry("write", attempt, keepalive=True)
                except PoisonError as exc:
                    before = len(pending.entries)
                    pending = self._without(pending, exc, letters)
                    rejected += before - len(pending.entries)
                    continue
                return total - rejected, durable
        finally:
            in_flight.set(0)

    def _without(
        self, write_batch: WriteBatch, exc: PoisonError, letters: list[DeadLetter]
    ) -> WriteBatch:
        """`write_batch` (what is left unstored of it) without the entries of the record the
        writer rejected, which joins `letters`."""
        if exc.record is None:
            raise FatalError(f"writer rejected a batch without naming a record: {exc}") from exc
        rejected = _position(exc.record)
        letters.append(self._judge.letter(exc.record, exc))
        return WriteBatch(
            write_batch.batch,
            tuple(e for e in write_batch.entries if _position(e.source) != rejected),
        )

"""What the writer conformance kit is made of: the delivered-item model, the target
protocol, batch building and the event-loop runner its checks share."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from connectors.core.records import Batch, Entry, Record, WriteBatch
from connectors.core.writer import Writer

T = TypeVar("T")
TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True)
class Delivered:
    """One thing the target holds (a key's value, a line of an object, an item of a
    request), with what makes a repeat of the same delivery recognisable.

    `value` None means the key was deleted (a tombstone, a deletion line).
    """

    identity: str
    key: bytes | None
    value: bytes | None


class Target(Protocol):
    """An empty place to write to, made fresh for each check."""

    def writer(self) -> Writer:
        """A new writer for this target, not started yet."""

    async def read(self) -> Sequence[Delivered]:
        """Everything stored so far; for logs in the order the target keeps it."""


Row = tuple[int, int, bytes | None, bytes | None]
"""(partition, offset, key, value) of one record that becomes one entry."""


def make_batch(
    topic: str, rows: Iterable[Row], *, timestamp_ms: int = 1_700_000_000_000
) -> WriteBatch:
    """A write batch of one entry per record, as the runner builds it without transforms."""
    records = []
    entries = []
    for partition, offset, key, value in rows:
        record = Record(topic, partition, offset, key, value, (), timestamp_ms + offset)
        records.append(record)
        entries.append(Entry(record, key, value, None, ()))
    return WriteBatch(Batch(tuple(records)), tuple(entries))


def dedupe(delivered: Iterable[Delivered]) -> list[Delivered]:
    """The first delivery of each identity, in order."""
    seen: set[str] = set()
    first = []
    for item in delivered:
        if item.identity not in seen:
            seen.add(item.identity)
            first.append(item)
    return first


def _by_key(delivered: Iterable[Delivered]) -> dict[bytes | None, list[bytes | None]]:
    values: dict[bytes | None, list[bytes | None]] = {}
    for item in delivered:
        values.setdefault(item.key, []).append(item.value)
    return values


def _fail(message: str) -> None:
    raise AssertionError(message)


def _run(factory: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(factory(), TIMEOUT_S)

    return asyncio.run(bounded())


async def _write(writer: Writer, *batches: WriteBatch) -> None:
    await writer.start()
    try:
        for batch in batches:
            await writer.write(batch)
    finally:
        await writer.close()


def _one_content_per_identity(delivered: Sequence[Delivered]) -> None:
    by_identity: dict[str, Delivered] = {}
    for item in delivered:
        seen = by_identity.setdefault(item.identity, item)
        if seen != item:
            _fail(f"identity {item.identity!r} delivered {seen!r} then {item!r}")

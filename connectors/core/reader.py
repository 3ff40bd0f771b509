"""The reader contract: where batches come from and where their progress is committed.

Lifecycle, from one task::

    start()  ->  (batch() ... commit(batch))*  ->  close()

`batch()` returns the next `Batch` (possibly empty after `BATCH_MAX_WAIT_MS`), never
records of a partition the reader no longer owns. `commit(next_offsets)` stores progress
and is called only after the batch was written. `close()` leaves the consumer group
without committing anything more. Readers raise `RetriableError` for broker outages that
may pass and `FatalError` for what will not (authorisation, unknown topic with creation
disabled).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic_settings import BaseSettings

from connectors.core.records import Batch, TopicPartition

OnRevoke = Callable[[list[TopicPartition]], Awaitable[None]]


class Reader(Protocol):
    async def start(self, on_revoke: OnRevoke) -> None:
        """Join the group. `on_revoke` is awaited before partitions are given away, so
        the runner can finish (write and commit) the batch in flight first."""

    async def batch(self) -> Batch: ...

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None: ...

    def assignment(self) -> set[TopicPartition]: ...

    async def end_offsets(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int]: ...

    async def positions(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int]:
        """The next offset the reader will return for each partition."""

    async def keepalive(self, seconds: float) -> None:
        """Pause every assigned partition and poll for `seconds` without returning records,
        so the group keeps us while a write is retried; records polled meanwhile are not
        lost (the position is rewound to them)."""

    def resume(self) -> None:
        """Undo `keepalive`'s pause once the retried call succeeded."""

    async def close(self) -> None: ...


@dataclass(frozen=True)
class ReaderContext:
    connector_name: str
    topics: tuple[str, ...]
    batch_max_messages: int
    batch_max_wait_ms: int


@dataclass(frozen=True)
class ReaderPlugin:
    name: str
    settings: type[BaseSettings]
    build: Any  # Callable[[<settings>, ReaderContext], Reader]

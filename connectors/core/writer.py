"""The writer contract: what every sink implements, and when the runner calls it.

Lifecycle, always in this order and from one task (never concurrently)::

    start()  ->  write(batch)*  ->  close()
                  check() may be called at any time between start() and close()

`write` returns once every entry of the batch is durably stored, or raises. It must be
idempotent: the runner commits offsets only after `write` returns, so after a crash the
same batch (or a prefix of it) is written again and must overwrite, not duplicate. Errors
it may raise:

- `RetriableError`: what is not stored may succeed later (timeouts, unreachable server);
- `PoisonError` with `record` set: that record is permanently rejected;
- `FatalError`: nothing will succeed without an operator (credentials, permissions).

Partial success: a writer that stored part of the batch before failing (some requests
accepted, some objects uploaded) says so in the error's `stored`, the indices of those
entries in `batch.entries`. The runner then hands the next `write` only the other entries
(a new `WriteBatch` of the same `Batch`), so nothing the target already took is sent
again; a writer that cannot tell leaves `stored` empty and gets the whole batch again.

Anything else is treated as fatal.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from pydantic_settings import BaseSettings

from connectors.core.records import TopicPartition, WriteBatch


@dataclass(frozen=True, slots=True)
class FlushPolicy:
    """How much a writer wants per `write` call, for sinks that prefer large objects.

    The runner keeps polling and accumulates batches until one limit is reached, then calls
    `write` once with all of them and commits them together afterwards. Before partitions
    are revoked and before shutdown, whatever was accumulated is written and committed.
    """

    max_bytes: int
    max_interval_s: float
    max_records: int = 1_000_000


class Writer(Protocol):
    """What every sink implements; see the module docstring for the lifecycle.

    A writer that wants batches accumulated into large writes (objects in a bucket) also
    has a `flush_policy` attribute, as `Accumulating` declares; a writer without one is
    handed each batch as it comes.
    """

    async def start(self) -> None:
        """Connect and verify the target is usable. Raise RetriableError while it is not
        reachable yet (the runner retries with RETRY_* backoff), FatalError if it never
        will be."""

    async def write(self, batch: WriteBatch) -> None:
        """Store every entry of `batch` (upsert; `value is None` deletes), idempotently."""

    async def check(self) -> None:
        """Raise if the target is unusable right now; used by the readiness probe."""

    async def close(self) -> None:
        """Flush and release resources; called once, also after a failed start."""


@runtime_checkable
class Accumulating(Writer, Protocol):
    """A writer that declares how much it wants per `write` (None: each batch as it comes)."""

    flush_policy: FlushPolicy | None


def flush_policy(writer: Writer) -> FlushPolicy | None:
    """The writer's declared `flush_policy`, None for a writer that declares none."""
    if isinstance(writer, Accumulating) and isinstance(writer.flush_policy, FlushPolicy):
        return writer.flush_policy
    return None


@runtime_checkable
class CommitsOffsets(Writer, Protocol):
    """A writer that commits the consumed offsets itself, atomically with what it wrote
    (a Kafka transaction), so a crash cannot leave output without its offsets or offsets
    without their output.

    When `commits_offsets` is true the runner calls `commit(offsets)` where it would commit
    through the reader (after the write and the dead letters, retried alike), never the
    reader's own commit; and `revoked(partitions)` once a rebalance took partitions away,
    after the batch in flight was committed, so the writer can drop what it holds for them.
    """

    commits_offsets: bool

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit `offsets` (next offset to read per partition) with what `write` stored."""

    async def revoked(self, partitions: Sequence[TopicPartition]) -> None:
        """Forget `partitions`: another member may own them now."""


@runtime_checkable
class StoresBytes(Writer, Protocol):
    """A writer that stores each entry's `value` bytes and never reads `Entry.message`
    (a key-value store). When `stores_bytes` is true the runtime encodes a transform's
    message and lets it go at once, instead of keeping it with the entry until the batch
    is written: a decoded upb message costs about 2 KB, 40 MB for a batch of 20,000, and
    freeing it while it is still in the CPU's caches is cheaper than after the write."""

    stores_bytes: bool


@runtime_checkable
class StagesWrites(Writer, Protocol):
    """A writer whose `write` ends with a long step that holds no Python lock and can fail
    only as a whole: LMDB's commit, which writes the pages the batch changed and fsyncs
    them. `stage` returns as soon as that step has begun, with it running; the runner reads
    and transforms the next batch meanwhile, and awaits the step before it commits offsets
    and before it stages the next batch (so writes and commits stay in order).

    The step's awaitable returns once every entry is durably stored, or raises; when it
    raises, nothing of the batch is stored. `stage` raises as `write` does (a poison
    record, a retriable failure) with nothing begun. A batch given to `write` instead is
    stored as before: `write` stays the whole contract, `stage` is the faster path."""

    async def stage(self, batch: WriteBatch) -> Awaitable[None]:
        """Store `batch` up to its last step, and return that step, running."""


def stager(writer: Writer) -> StagesWrites | None:
    """The writer, when it can stage its writes; None for every other."""
    return writer if isinstance(writer, StagesWrites) else None


def stores_bytes(writer: Writer) -> bool:
    """Whether the writer declares that it never reads `Entry.message`."""
    return isinstance(writer, StoresBytes) and writer.stores_bytes is True


def offset_committer(writer: Writer) -> CommitsOffsets | None:
    """The writer, when it commits the consumed offsets itself; None for every other."""
    if isinstance(writer, CommitsOffsets) and writer.commits_offsets is True:
        return writer
    return None


class KeyValueView(Protocol):
    """Read access to a key-value target, for `connector kv get|dump`."""

    def get(self, key: bytes) -> bytes | None: ...

    def items(self, limit: int | None = None) -> list[tuple[bytes, bytes]]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class WriterPlugin:
    """How the runtime finds, configures and builds one kind of writer.

    `settings` is a pydantic-settings model with the writer's own env prefix; it is validated
    with the rest of the environment before anything connects, and `connector check` prints
    it with secrets masked (`connectors.config.shown`).
    """

    name: str
    settings: type[BaseSettings]
    build: Any  # Callable[[<settings>, WriterContext], Writer]
    open_view: Any = None  # Callable[[<settings>], KeyValueView] | None
    #: Callable[[<settings>], Mapping[str, Sequence[str]]] | None: the output fields the
    #: settings read, as dotted paths by variable (`HTTP_URL` -> `user_id`), so that a field
    #: the output type does not have is a configuration error where the type is known.
    value_fields: Any = None


@dataclass(frozen=True, slots=True)
class WriterContext:
    """What a writer may know about the pipeline it serves; `group_id` is the consumer
    group the offsets are committed in (a writer that commits them itself needs it)."""

    connector_name: str
    group_id: str | None = None

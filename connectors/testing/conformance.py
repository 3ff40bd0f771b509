"""The writer contract as executable checks, for every writer against its real target.

A writer's test module subclasses `WriterContract`, says what kind of target it writes to
(class attributes), and implements two hooks: `new_target()` gives an empty place to write
to, able to build writers for it and to read back what they stored; `failing_write()` sets
up each failure the writer must classify. Every `test_*` method below then runs against
the real server, the same way for the KV, S3, HTTP and Kafka writers and for a connector
repository's own writer::

    class TestMyWriter(WriterContract):
        keeps_history = True                    # a log: every write stays visible
        failures = {"unreachable": RetriableError}

        async def new_target(self) -> Target: ...
        async def failing_write(self, scenario): ...

What is checked (the contract of `connectors.core.writer.Writer`):

- every entry arrives, and entries of one key from one partition in offset order;
- a batch with no entries (every record dropped by a transform) stores nothing;
- writing the same batch again, with the same or a new writer, is harmless: the target is
  unchanged, or (`replay_redelivers`) each repeat carries the identity of the first
  delivery (an idempotency key, a source header) and the same content;
- replaying an older batch after a newer one does not bring old values back;
- deletions are stored (`supports_deletes`), or refused as poison, never dropped silently;
- `check()` passes on a healthy target;
- each failure in `failures` raises its class from `start()` or `write()`, and a
  `PoisonError` names a record of the batch.

Checks are plain synchronous methods that run their own event loop, so neither pytest nor
pytest-asyncio is needed to import this module or to run them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

from connectors.core.errors import ConnectorError, PoisonError
from connectors.core.records import Batch, Entry, Record, WriteBatch
from connectors.core.writer import Writer

__all__ = ["Delivered", "Target", "WriterContract", "dedupe", "make_batch"]

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


class WriterContract:
    """Subclass as `Test<Writer>Contract`; see the module docstring."""

    keeps_history: ClassVar[bool] = False
    """True for logs (objects, requests, topics): every write stays visible. False for
    stores where a key holds only its latest value."""

    replay_redelivers: ClassVar[bool] = False
    """True when a replay reaches the target again (HTTP, Kafka) and is recognisable by
    its identity; False when it must leave the target exactly as it was (KV, S3)."""

    supports_deletes: ClassVar[bool] = True
    """False when the target cannot express a deletion; it must then refuse one as poison."""

    failures: ClassVar[Mapping[str, type[ConnectorError]]] = {}
    """Scenario name → the error class `start()` or `write()` must raise for it; one
    `test_error_<name>` check is generated per scenario."""

    topic: ClassVar[str] = "contract.topic"

    async def new_target(self) -> Target:
        raise NotImplementedError("a writer's contract tests implement new_target()")

    async def failing_write(self, scenario: str) -> tuple[Writer, WriteBatch | None]:
        """A writer (and optionally the batch) that meets failure `scenario`; a None batch
        means `standard_batch()`."""
        raise NotImplementedError(f"failing_write({scenario!r}) is not implemented")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for scenario, expected in cls.failures.items():
            name = f"test_error_{scenario}"
            if name not in cls.__dict__:
                setattr(cls, name, _error_check(scenario, expected))

    # ------------------------------------------------------------------ the batches

    def standard_batch(self) -> WriteBatch:
        """Two partitions, three keys each, eight offsets each; values are not JSON."""
        return make_batch(
            self.topic,
            [
                (p, offset, f"p{p}-k{offset % 3}".encode(), f"p{p} value@{offset}".encode())
                for p in (0, 1)
                for offset in range(8)
            ],
        )

    def _expected(self, *batches: WriteBatch) -> dict[bytes | None, list[bytes | None]]:
        expected: dict[bytes | None, list[bytes | None]] = {}
        for batch in batches:
            for entry in batch.entries:
                expected.setdefault(entry.key, []).append(entry.value)
        if not self.keeps_history:
            return {key: values[-1:] for key, values in expected.items()}
        return expected

    def _observed(self, delivered: Sequence[Delivered]) -> dict[bytes | None, list[bytes | None]]:
        observed = _by_key(dedupe(delivered))
        if not self.keeps_history:
            return {key: values[-1:] for key, values in observed.items()}
        return observed

    # -------------------------------------------------------------------- the checks

    def test_every_entry_arrives_in_partition_order(self) -> None:
        async def check() -> None:
            target = await self.new_target()
            batch = self.standard_batch()
            await _write(target.writer(), batch)
            observed = self._observed(await target.read())
            expected = self._expected(batch)
            if observed != expected:
                _fail(f"stored per key {observed!r}, expected {expected!r}")

        _run(check)

    def test_batch_without_entries_stores_nothing(self) -> None:
        async def check() -> None:
            target = await self.new_target()
            dropped = WriteBatch(self.standard_batch().batch, ())
            await _write(target.writer(), dropped)
            stored = await target.read()
            if stored:
                _fail(f"a batch without entries stored {list(stored)!r}")

        _run(check)

    def test_replaying_a_batch_is_harmless(self) -> None:
        async def check() -> None:
            target = await self.new_target()
            batch = self.standard_batch()
            await _write(target.writer(), batch)
            first = list(await target.read())
            await _write(target.writer(), batch, batch)  # a restarted writer, then a retry
            again = list(await target.read())
            if not self.replay_redelivers:
                if again != first:
                    _fail(f"replay changed the target:\nbefore {first!r}\nafter  {again!r}")
                return
            if dedupe(again) != dedupe(first):
                _fail(f"replay brought new identities:\nbefore {first!r}\nafter  {again!r}")
            by_identity: dict[str, Delivered] = {}
            for item in again:
                seen = by_identity.setdefault(item.identity, item)
                if seen != item:
                    _fail(f"identity {item.identity!r} delivered {seen!r} then {item!r}")

        _run(check)

    def test_replay_of_an_older_batch_keeps_newer_values(self) -> None:
        async def check() -> None:
            target = await self.new_target()
            key = b"the-key"
            older = make_batch(self.topic, [(0, o, key, b"old@%d" % o) for o in range(5)])
            newer = make_batch(self.topic, [(0, o, key, b"new@%d" % o) for o in range(5, 10)])
            await _write(target.writer(), older, newer, older)
            await _write(target.writer(), older)
            observed = self._observed(await target.read())
            expected = self._expected(older, newer)
            if observed != expected:
                _fail(f"after replaying older offsets: {observed!r}, expected {expected!r}")

        _run(check)

    def test_deletes_are_stored_or_refused(self) -> None:
        async def check() -> None:
            target = await self.new_target()
            batch = make_batch(
                self.topic,
                [(0, 0, b"gone", b"v0"), (0, 1, b"kept", b"v1"), (0, 2, b"gone", None)],
            )
            if not self.supports_deletes:
                try:
                    await _write(target.writer(), batch)
                except PoisonError as exc:
                    if exc.record is not batch.batch.records[2]:
                        _fail(f"PoisonError names {exc.record!r}, not the deletion")
                    return
                _fail("a writer without deletes accepted one silently")
            await _write(target.writer(), batch)
            observed = _by_key(dedupe(await target.read()))
            if observed.get(b"gone", [None])[-1] is not None:
                _fail(f"deleted key still holds {observed[b'gone']!r}")
            if observed.get(b"kept", [None])[-1] != b"v1":
                _fail(f"untouched key holds {observed.get(b'kept')!r}")

        _run(check)

    def test_check_passes_on_a_healthy_target(self) -> None:
        async def check() -> None:
            target = await self.new_target()
            writer = target.writer()
            await writer.start()
            try:
                await writer.check()
            finally:
                await writer.close()

        _run(check)


def _error_check(scenario: str, expected: type[ConnectorError]) -> Callable[[Any], None]:
    def test(self: WriterContract) -> None:
        async def check() -> None:
            writer, batch = await self.failing_write(scenario)
            batch = batch or self.standard_batch()
            try:
                await writer.start()
                await writer.write(batch)
            except ConnectorError as exc:
                if not isinstance(exc, expected):
                    _fail(f"{scenario}: raised {type(exc).__name__}({exc}), not {expected}")
                if isinstance(exc, PoisonError) and exc.record not in batch.batch.records:
                    _fail(f"{scenario}: PoisonError names {exc.record!r}, not in the batch")
                return
            finally:
                await writer.close()
            _fail(f"{scenario}: start() and write() succeeded, expected {expected.__name__}")

        _run(check)

    test.__name__ = f"test_error_{scenario}"
    test.__doc__ = f"Failure {scenario!r} raises {expected.__name__}."
    return test

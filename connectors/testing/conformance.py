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
- each failure in `failures` raises its class from `start()` or `write()`, a
  `PoisonError` names a record of the batch, and what an error reports as `stored` is a
  set of places in the batch (none for a writer that declares `partial_success = False`);
- partial success (`partial_success`): after part of a batch was stored, writing only the
  rest (a new `WriteBatch` of the same `Batch`, as the runner's next attempt) completes
  it; and when the writer's tests arrange a write that fails partway (`fail_partway`),
  what it reports stored is there, the rest completes the batch without sending anything
  twice, and a replay of the whole batch (a crash before the commit) brings no identity
  that was not delivered before.

Checks are plain synchronous methods that run their own event loop, so neither pytest nor
pytest-asyncio is needed to import this module or to run them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from connectors.core.errors import ConnectorError, PoisonError
from connectors.core.records import WriteBatch
from connectors.core.writer import Writer
from connectors.testing.kit import (
    Delivered,
    Row,
    Target,
    _by_key,
    _fail,
    _run,
    _write,
    dedupe,
    make_batch,
)
from connectors.testing.partial import PartialSuccessChecks

__all__ = ["Delivered", "Row", "Target", "WriterContract", "dedupe", "make_batch"]


class WriterContract(PartialSuccessChecks):
    """Subclass as `Test<Writer>Contract`; see the module docstring."""

    keeps_history: ClassVar[bool] = False
    """True for logs (objects, requests, topics): every write stays visible. False for
    stores where a key holds only its latest value."""

    replay_redelivers: ClassVar[bool] = False
    """True when a replay reaches the target again (HTTP, Kafka) and is recognisable by
    its identity; False when it must leave the target exactly as it was (KV, S3)."""

    supports_deletes: ClassVar[bool] = True
    """False when the target cannot express a deletion; it must then refuse one as poison."""

    partial_success: ClassVar[bool] = True
    """False for a writer that stores a batch all or nothing (one transaction): its errors
    never carry `stored`, and the runner never hands it part of a batch."""

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

    async def fail_partway(self, target: Target) -> tuple[Writer, WriteBatch | None] | None:
        """A writer for `target` whose first write of the batch (None: `standard_batch()`)
        stores part of it, then fails for a passing reason (RetriableError): the next write
        succeeds. None (the default) when the writer's tests cannot arrange one."""
        return None

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
                stored: frozenset[int] = getattr(exc, "stored", frozenset())
                if stored and (
                    not self.partial_success or not stored <= set(range(len(batch.entries)))
                ):
                    _fail(f"{scenario}: reported {sorted(stored)} stored")
                return
            finally:
                await writer.close()
            _fail(f"{scenario}: start() and write() succeeded, expected {expected.__name__}")

        _run(check)

    test.__name__ = f"test_error_{scenario}"
    test.__doc__ = f"Failure {scenario!r} raises {expected.__name__}."
    return test

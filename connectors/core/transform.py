"""Transforms: plain functions registered by name, applied in the order `TRANSFORMS` lists.

A transform receives the decoded message and a `TransformContext` and returns:

- `None` or an empty iterable: drop the record (its offset is still committed);
- a value (protobuf message, bytes, str, or a JSON-able dict): one entry under the
  record's key;
- `Put(key, value)` to choose the key, `Delete(key)` to remove one;
- an iterable of the above for fan-out.

A transform never mutates its input, and raising marks the record as poison (stage
`transform:<name>`), except raising `RetriableError` (a dependency that is down, not a bad
record): the batch then stops at that record and the runner calls the chain again on it,
with backoff, until it passes; so does a result that cannot be stored (a key that is not bytes, str
or None, a value JSON cannot encode, a generator that raises part-way), since turning the
result into entries is part of the step. Running out of memory or file descriptors is not
the record's fault: it stops the connector (FatalError) with nothing committed past it.
Intermediate results feed the next transform; a `Put` carries its key forward, a `Delete`
leaves the chain at once.
"""

from __future__ import annotations

import errno
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from time import perf_counter
from typing import Any, NamedTuple, Protocol, TypeVar

from google.protobuf.message import Message

from connectors.core.errors import ConnectorError, FatalError, PoisonError, RetriableError
from connectors.core.records import Entry, Headers, Record
from connectors.core.registry import Registry

_log = logging.getLogger("connectors.core.transform")


class TransformContext(NamedTuple):
    """Where the message came from; the same object for every transform in a chain."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: Headers
    timestamp_ms: int
    logger: logging.Logger

    @classmethod
    def of(cls, record: Record) -> TransformContext:
        # tuple.__new__ skips the keyword handling of the generated __new__: one context is
        # built per record.
        context: TransformContext = _new_tuple(
            cls, (record[0], record[1], record[2], record[3], record[5], record[6], _log)
        )
        return context


_new_tuple: Any = tuple.__new__
_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class Put:
    key: bytes | str | None
    value: Any


@dataclass(frozen=True, slots=True)
class Delete:
    key: bytes | str | None


class Transform(Protocol):
    def __call__(self, message: Any, ctx: TransformContext, /) -> Any: ...


F = TypeVar("F", bound=Callable[..., Any])

TRANSFORMS: Registry[Transform] = Registry("transform", "connectors.transforms")
"""The process-wide transform registry; `@transform` adds to it."""


def transform(name: str, registry: Registry[Transform] | None = None) -> Callable[[F], F]:
    """Register a function under `name`; the function itself is returned unchanged.

    A function that raises `RetriableError` (a lookup that timed out, a 503) is called again
    for the same record, with the runner's backoff, until it passes or RETRY_MAX_ATTEMPTS
    is spent: it must be idempotent per record (calling it twice for one record does no
    harm twice). Any other exception makes the record poison.
    """

    def register(fn: F) -> F:
        (registry or TRANSFORMS).register(name, fn)
        return fn

    return register


def _as_bytes(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, Message):
        return value.SerializeToString(deterministic=True)
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _key_bytes(key: Any) -> bytes | None:
    """A `Put` or `Delete` key as stored; any other type than bytes, str or None is the
    transform's mistake, and its record is poison rather than a writer's crash."""
    if type(key) is str:  # the usual key, checked first: this runs once per output
        return key.encode()
    if key is None or type(key) is bytes:
        return key
    if isinstance(key, str):
        return key.encode()
    if isinstance(key, bytes | bytearray | memoryview):
        return bytes(key)
    raise TypeError(f"a key must be bytes, str or None, not {type(key).__name__}")


_SINGLE = (Put, Delete, Message, bytes, bytearray, memoryview, str, dict)


def _results(result: Any) -> Iterator[Any]:
    """A transform's return value as a sequence of outputs."""
    if result is None:
        return
    if isinstance(result, _SINGLE):
        yield result
    elif isinstance(result, Iterable):
        yield from result
    else:
        yield result


#: errno values of an OSError that mean the process, not the record, ran out of something.
EXHAUSTION_ERRNOS = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS, errno.ENOSPC}
)


def exhausted(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) is the process running out of memory, file
    descriptors or space: no record is at fault, and the next one would fail the same way,
    so it must stop the connector instead of dead-lettering valid records."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 8:
        if isinstance(current, MemoryError):
            return True
        if isinstance(current, OSError) and current.errno in EXHAUSTION_ERRNOS:
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    return False


Decoded = tuple[int, Record, Any]
"""(index in its batch, record, decoded message): what `Chain.apply_batch` transforms."""


class Applied(NamedTuple):
    """What one batch became: entries in record order, the records a transform rejected
    (index in the batch, record, error) and, for chains of more than one transform, the
    seconds each one took, by name.

    `stopped`, when set, is where a transform asked to be tried again: the position of
    that record in what `apply_batch` was given, and the error; the entries and poison are
    those of the records before it, and nothing from it on was applied."""

    entries: list[Entry]
    poison: list[tuple[int, Record, PoisonError]]
    seconds: dict[str, float]
    stopped: tuple[int, RetriableError] | None = None


@dataclass(frozen=True, slots=True)
class Chain:
    """The transforms of a pipeline, in order, applied to one record at a time.

    `apply_batch` returns, with the entries, the time of each transform summed per name
    when there is more than one, so a slow one shows by name; a single transform's time is
    the whole transform stage and costs no extra clock reads.
    """

    steps: tuple[tuple[str, Transform], ...]

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.steps]

    def apply(self, record: Record, message: Any) -> list[Entry]:
        """The entries for one record; raises PoisonError when a transform raises or
        returns what cannot be stored, RetriableError when a transform raised it,
        FatalError when the process ran out of memory or file descriptors."""
        return self._apply(record, message, None)

    def apply_batch(self, decoded: Iterable[Decoded]) -> Applied:
        """Every record's entries, in order; poison is collected, not raised. A record
        whose transform raised RetriableError stops the batch there (`Applied.stopped`)."""
        seconds: dict[str, float] = {}
        timed = seconds if len(self.steps) > 1 else None
        apply = self._apply
        entries: list[Entry] = []
        poison: list[tuple[int, Record, PoisonError]] = []
        for position, (index, record, message) in enumerate(decoded):
            try:
                entries.extend(apply(record, message, timed))
            except PoisonError as exc:
                poison.append((index, record, exc))
            except RetriableError as exc:
                return Applied(entries, poison, seconds, (position, exc))
        return Applied(entries, poison, seconds)

    def _apply(self, record: Record, message: Any, seconds: dict[str, float] | None) -> list[Entry]:
        steps = self.steps
        if not steps:
            return [Entry(record, record.key, record.value, message, record.headers)]
        ctx = TransformContext.of(record)
        if len(steps) == 1:
            # The common shape, one transform returning one Put, without the general
            # loop's lists: this runs once per record.
            name, fn = steps[0]
            try:
                result = fn(message, ctx)
                if type(result) is Put:
                    return [_entry(record, _key_bytes(result.key), result.value)]
            except Exception as exc:
                raise _failure(name, record, exc) from exc
            return self._general(record, ctx, message, seconds, first=result)
        return self._general(record, ctx, message, seconds)

    def _general(
        self,
        record: Record,
        ctx: TransformContext,
        message: Any,
        seconds: dict[str, float] | None,
        first: Any = _UNSET,
    ) -> list[Entry]:
        """Any chain and any result shape; `first` is the first step's result when the
        caller already called it. Whatever goes wrong in a step, from the call to turning
        its results into entries, is that step's failure."""
        pending: list[tuple[bytes | None, Any]] = [(record.key, message)]
        entries: list[Entry] = []
        last = len(self.steps) - 1
        for index, (name, fn) in enumerate(self.steps):
            try:
                pending = _step(
                    name, fn, record, ctx, pending, entries, seconds, first, index == last
                )
                first = _UNSET
                if index == last:
                    for key, value in pending:
                        entries.append(_entry(record, key, value))
            except Exception as exc:
                raise _failure(name, record, exc) from exc
        return entries


def _step(
    name: str,
    fn: Transform,
    record: Record,
    ctx: TransformContext,
    pending: list[tuple[bytes | None, Any]],
    entries: list[Entry],
    seconds: dict[str, float] | None,
    first: Any,
    last: bool,
) -> list[tuple[bytes | None, Any]]:
    """One transform over every output of the previous one: deletions go to `entries`
    at once, everything else is returned for the next step."""
    produced: list[tuple[bytes | None, Any]] = []
    for key, value in pending:
        if first is not _UNSET:
            result, first = first, _UNSET
        else:
            step_ctx = ctx if key == ctx.key else ctx._replace(key=key)
            if seconds is None:
                result = fn(value, step_ctx)
            else:
                started = perf_counter()
                result = fn(value, step_ctx)
                seconds[name] = seconds.get(name, 0.0) + perf_counter() - started
        if last and type(result) is Put:  # the common case, kept cheap
            entries.append(_entry(record, _key_bytes(result.key), result.value))
            continue
        for out in _results(result):
            if isinstance(out, Delete):
                entries.append(Entry(record, _key_bytes(out.key), None))
            elif isinstance(out, Put):
                produced.append((_key_bytes(out.key), out.value))
            else:
                produced.append((key, out))
    return produced


def _failure(step: str, record: Record, exc: Exception) -> ConnectorError:
    """What a failing transform makes of its record: poison of stage `transform:<step>`,
    unless the process itself ran out of something (then nothing may be committed past it)
    or the transform said the record may pass if tried again (RetriableError, naming the
    transform and the record)."""
    where = f"{record.topic}[{record.partition}]@{record.offset}"
    if exhausted(exc):
        return FatalError(
            f"transform:{step} ran out of resources at {where} ({type(exc).__name__}: "
            f"{exc}); stopping, nothing committed past it"
        )
    if isinstance(exc, RetriableError):
        return RetriableError(f"transform:{step} at {where}: {exc}", exc.retry_after)
    return PoisonError(f"transform:{step}", f"{type(exc).__name__}: {exc}", record)


def _entry(record: Record, key: bytes | None, value: Any) -> Entry:
    if isinstance(value, Message):
        return Entry(record, key, value.SerializeToString(deterministic=True), value)
    return Entry(record, key, _as_bytes(value), None)

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

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from time import perf_counter
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar

from connectors.core.errors import PoisonError, RetriableError
from connectors.core.outputs import (
    EXHAUSTION_ERRNOS,
    Delete,
    MakeEntry,
    Put,
    absorb,
    entry,
    entry_bytes,
    exhausted,
    key_bytes,
)
from connectors.core.records import Entry, Headers, Record
from connectors.core.registry import Registry
from connectors.core.transform_failure import TransformRetriable, failure
from connectors.core.transform_kinds import BatchTransform, Kind, kind_of

if TYPE_CHECKING:
    import httpx

    from connectors.core.transform_cache import TransformCache

__all__ = [
    "EXHAUSTION_ERRNOS",
    "TRANSFORMS",
    "Applied",
    "Chain",
    "Decoded",
    "Delete",
    "Put",
    "Transform",
    "TransformContext",
    "TransformRetriable",
    "exhausted",
    "failure",
    "transform",
]

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

    @property
    def http(self) -> httpx.AsyncClient:
        """The process's shared `httpx.AsyncClient` (TRANSFORM_HTTP_*): connection errors,
        timeouts, 5xx, 408 and 429 raise RetriableError, other 4xx PoisonError; requests
        carry this record's trace headers. For async transforms (needs a running loop)."""
        from connectors.core.context import RESOURCES

        return RESOURCES.http

    @property
    def cache(self) -> TransformCache:
        """The process's TTL cache (TRANSFORM_CACHE_*): `await ctx.cache.get(key, load)`."""
        from connectors.core.context import RESOURCES

        return RESOURCES.cache

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


class Transform(Protocol):
    def __call__(self, message: Any, ctx: TransformContext, /) -> Any: ...


F = TypeVar("F", bound=Callable[..., Any])

TRANSFORMS: Registry[Transform] = Registry("transform", "connectors.transforms")
"""The process-wide transform registry; `@transform` adds to it."""


def transform(
    name: str, registry: Registry[Transform] | None = None, *, batch: bool = False
) -> Callable[[F], F]:
    """Register a function under `name`; the function itself is returned unchanged.

    - `def fn(message, ctx)`: called inline, one record after the other;
    - `async def fn(message, ctx)`: awaited concurrently across a batch's records, at most
      TRANSFORM_CONCURRENCY at once; outputs stay in record order per partition;
    - `batch=True`: `fn(messages: list, contexts: list[TransformContext]) -> list` (sync or
      async), called once per partition's share of a batch, in offset order; output `i` is
      what a per-record transform would return for message `i` (None drops, a value, Put,
      Delete, an iterable for fan-out), or an Exception instance for a record that failed
      alone (PoisonError or any other: that record is poison; RetriableError: it is tried
      again). Raising RetriableError retries the whole call; raising anything else makes
      every record of the call poison; a list of the wrong length too.

    A function that raises `RetriableError` (a lookup that timed out, a 503) is called again
    for the same record, with the runner's backoff, until it passes or RETRY_MAX_ATTEMPTS
    is spent: it must be idempotent per record (calling it twice for one record does no
    harm twice); so are the records after it in the batch. Any other exception makes the
    record poison.
    """

    def register(fn: F) -> F:
        item: Any = BatchTransform(fn) if batch else fn
        (registry or TRANSFORMS).register(name, item)
        return fn

    return register


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
    dropped: dict[str, int] | None = None
    """Records each transform dropped (returned None or nothing for), by name."""


@dataclass(frozen=True, slots=True)
class Chain:
    """The transforms of a pipeline, in order, applied to one record at a time.

    `apply_batch` returns, with the entries, the time of each transform summed per name
    when there is more than one, so a slow one shows by name; a single transform's time is
    the whole transform stage and costs no extra clock reads.
    """

    steps: tuple[tuple[str, Transform], ...]
    kinds: tuple[Kind, ...] = field(init=False, compare=False)
    #: How an output becomes an entry: with its message kept for writers that render it
    #: (JSON, a type check), or bytes only (`storing_bytes`).
    entry: MakeEntry = field(default=entry, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", tuple(kind_of(fn) for _, fn in self.steps))

    def storing_bytes(self) -> Chain:
        """This chain for a writer that never reads `Entry.message` (`StoresBytes`)."""
        return replace(self, entry=entry_bytes)

    @property
    def keeps_messages(self) -> bool:
        return self.entry is not entry_bytes

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.steps]

    @property
    def is_sync(self) -> bool:
        """Only sync per-record steps: `apply_batch` runs it without the event loop."""
        return all(kind == "sync" for kind in self.kinds)

    def apply(self, record: Record, message: Any) -> list[Entry]:
        """The entries for one record; raises PoisonError when a transform raises or
        returns what cannot be stored, RetriableError when a transform raised it,
        FatalError when the process ran out of memory or file descriptors."""
        return self._apply(record, message, None, None)

    def passed(self, records: Sequence[Record]) -> list[Entry]:
        """The entries of raw records when the chain has no transform (the runner asks
        only then): each record's value is its message, so nothing is decoded or applied,
        and one tuple is built per record, the entry, where `apply_batch` would take an
        (index, record, message) tuple first (230 against 373 ns a record, RESULTS.md)."""
        if self.keeps_messages:
            return [_new_tuple(Entry, (r, r[3], r[4], r[4], r[5])) for r in records]
        return [_new_tuple(Entry, (r, r[3], r[4], None, r[5])) for r in records]

    def apply_batch(self, decoded: Iterable[Decoded]) -> Applied:
        """Every record's entries, in order; poison is collected, not raised. A record
        whose transform raised RetriableError stops the batch there (`Applied.stopped`)."""
        seconds: dict[str, float] = {}
        if not self.steps:  # pass-through: an entry per record, built in one comprehension
            keep = self.keeps_messages
            passed = [
                _new_tuple(Entry, (r, r.key, r.value, m if keep else None, r.headers))
                for _, r, m in decoded
            ]
            return Applied(passed, [], seconds, None, {})
        if len(self.steps) == 1:
            return self._apply_one(decoded)
        timed = seconds  # more than one step: each one's time, by name
        dropped: dict[str, int] = {}
        apply = self._apply
        entries: list[Entry] = []
        poison: list[tuple[int, Record, PoisonError]] = []
        for position, (index, record, message) in enumerate(decoded):
            try:
                entries.extend(apply(record, message, timed, dropped))
            except PoisonError as exc:
                poison.append((index, record, exc))
            except RetriableError as exc:
                return Applied(entries, poison, seconds, (position, exc), dropped)
        return Applied(entries, poison, seconds, None, dropped)

    def _apply_one(self, decoded: Iterable[Decoded]) -> Applied:
        """`apply_batch` for a chain of one transform, the usual shape: `_apply` inlined
        in one loop, with no call, list or attribute lookup per record that it can do
        without. A result other than one `Put` goes the general way (`_general`)."""
        ((name, fn),) = self.steps
        make = self.entry
        dropped: dict[str, int] = {}
        entries: list[Entry] = []
        poison: list[tuple[int, Record, PoisonError]] = []
        append = entries.append
        for position, (index, record, message) in enumerate(decoded):
            ctx: TransformContext = _new_tuple(
                TransformContext,
                (record[0], record[1], record[2], record[3], record[5], record[6], _log),
            )
            try:
                try:
                    result = fn(message, ctx)
                    if type(result) is Put:
                        value = result.value
                        if type(value) is bytes:  # stored as it is: the entry built directly
                            append(
                                _new_tuple(Entry, (record, key_bytes(result.key), value, None, ()))
                            )
                        else:
                            append(make(record, key_bytes(result.key), value))
                        continue
                except Exception as exc:
                    raise failure(name, record, exc) from exc
                entries.extend(self._general(record, ctx, message, None, dropped, first=result))
            except PoisonError as exc:
                poison.append((index, record, exc))
            except RetriableError as exc:
                return Applied(entries, poison, {}, (position, exc), dropped)
        return Applied(entries, poison, {}, None, dropped)

    def _apply(
        self,
        record: Record,
        message: Any,
        seconds: dict[str, float] | None,
        dropped: dict[str, int] | None,
    ) -> list[Entry]:
        steps = self.steps
        if not steps:
            kept = message if self.keeps_messages else None
            return [Entry(record, record.key, record.value, kept, record.headers)]
        # One record at a time (`apply`, and chains of several steps); a chain of one step
        # in a batch is `_apply_one`'s.
        ctx: TransformContext = _new_tuple(
            TransformContext,
            (record[0], record[1], record[2], record[3], record[5], record[6], _log),
        )
        return self._general(record, ctx, message, seconds, dropped)

    def _general(
        self,
        record: Record,
        ctx: TransformContext,
        message: Any,
        seconds: dict[str, float] | None,
        dropped: dict[str, int] | None,
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
                    name, fn, record, ctx, pending, entries, seconds, first, index == last,
                    self.entry,
                )  # fmt: skip
                first = _UNSET
                if not pending and not entries:  # dropped here: nothing left for the rest
                    if dropped is not None:
                        dropped[name] = dropped.get(name, 0) + 1
                    return entries
                if index == last:
                    for key, value in pending:
                        entries.append(self.entry(record, key, value))
            except Exception as exc:
                raise failure(name, record, exc) from exc
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
    make: MakeEntry = entry,
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
            entries.append(make(record, key_bytes(result.key), result.value))
            continue
        absorb(record, key, result, entries, produced)
    return produced

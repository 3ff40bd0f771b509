"""Transforms: plain functions registered by name, applied in the order `TRANSFORMS` lists.

A transform receives the decoded message and a `TransformContext` and returns:

- `None` or an empty iterable: drop the record (its offset is still committed);
- a value (protobuf message, bytes, str, or a JSON-able dict): one entry under the
  record's key;
- `Put(key, value)` to choose the key, `Delete(key)` to remove one;
- an iterable of the above for fan-out.

A transform never mutates its input, and raising marks the record as poison (stage
`transform:<name>`). Intermediate results feed the next transform; a `Put` carries its key
forward, a `Delete` leaves the chain at once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any, NamedTuple, Protocol, TypeVar

from google.protobuf.message import Message

from connectors.core.errors import PoisonError
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
    """Register a function under `name`; the function itself is returned unchanged."""

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


def _key_bytes(key: bytes | str | None) -> bytes | None:
    return key.encode() if isinstance(key, str) else key


def _results(result: Any) -> Iterator[Any]:
    """A transform's return value as a sequence of outputs."""
    if result is None:
        return
    if isinstance(result, Put | Delete | Message | bytes | str | dict):
        yield result
    elif isinstance(result, Iterable):
        yield from result
    else:
        yield result


@dataclass(frozen=True, slots=True)
class Chain:
    """The transforms of a pipeline, in order, applied to one record at a time.

    With more than one transform, the time of each is summed per name in `seconds` (the
    runner reads and resets it per batch), so a slow one shows by name; a single transform's
    time is the whole transform stage and costs no extra clock reads.
    """

    steps: tuple[tuple[str, Transform], ...]
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.steps]

    def apply(self, record: Record, message: Any) -> list[Entry]:
        """The entries for one record; raises PoisonError when a transform raises."""
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
            except Exception as exc:
                raise _poison(name, record, exc) from exc
            if type(result) is Put:
                return [_entry(record, _key_bytes(result.key), result.value)]
            return self._general(record, ctx, message, first=result)
        return self._general(record, ctx, message)

    def _general(
        self, record: Record, ctx: TransformContext, message: Any, first: Any = _UNSET
    ) -> list[Entry]:
        """Any chain and any result shape; `first` is the first step's result when the
        caller already called it."""
        steps = self.steps
        pending: list[tuple[bytes | None, Any]] = [(record.key, message)]
        entries: list[Entry] = []
        last = len(steps) - 1
        timed = last > 0
        seconds = self.seconds
        for index, (name, fn) in enumerate(steps):
            produced: list[tuple[bytes | None, Any]] = []
            for key, value in pending:
                if first is not _UNSET:
                    result, first = first, _UNSET
                    timed_here = False
                else:
                    step_ctx = ctx if key == ctx.key else ctx._replace(key=key)
                    started = perf_counter() if timed else 0.0
                    try:
                        result = fn(value, step_ctx)
                    except Exception as exc:
                        raise _poison(name, record, exc) from exc
                    timed_here = timed
                if timed_here:
                    seconds[name] = seconds.get(name, 0.0) + perf_counter() - started
                if index == last and type(result) is Put:  # the common case, kept cheap
                    entries.append(_entry(record, _key_bytes(result.key), result.value))
                    continue
                for out in _results(result):
                    if isinstance(out, Delete):
                        entries.append(Entry(record, _key_bytes(out.key), None))
                    elif isinstance(out, Put):
                        produced.append((_key_bytes(out.key), out.value))
                    else:
                        produced.append((key, out))
            pending = produced
        for key, value in pending:
            entries.append(_entry(record, key, value))
        return entries


def _poison(step: str, record: Record, exc: Exception) -> PoisonError:
    """What a raising transform makes of its record: poison of stage `transform:<step>`."""
    return PoisonError(f"transform:{step}", f"{type(exc).__name__}: {exc}", record)


def _entry(record: Record, key: bytes | None, value: Any) -> Entry:
    if isinstance(value, Message):
        return Entry(record, key, value.SerializeToString(deterministic=True), value)
    return Entry(record, key, _as_bytes(value), None)

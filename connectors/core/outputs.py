"""What a transform's return value becomes: entries (key and value as bytes) and outputs
for the next step, and which failures are the process's rather than the record's.

Kept apart from the chain so that the sync chain and the async/batch stages
(`connectors.core.staged`) turn results into entries by the same rules.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from connectors.core.records import Entry, Record


# Not frozen: a frozen dataclass is built through `object.__setattr__` per field, 1.5 us
# against 0.3 us for the Put every transform returns (docs/fast-transforms.md).
@dataclass(slots=True)
class Put:
    key: bytes | str | None
    value: Any


@dataclass(slots=True)
class Delete:
    key: bytes | str | None


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


def key_bytes(key: Any) -> bytes | None:
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
    elif isinstance(result, Awaitable):
        close = getattr(result, "close", None)
        if close is not None:
            close()  # never awaited: no "coroutine was never awaited" warning either
        raise TypeError(
            f"returned a {type(result).__name__} from a transform registered as sync; "
            f"declare it `async def` so that the runner awaits it"
        )
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


def absorb(
    record: Record,
    key: bytes | None,
    result: Any,
    entries: list[Entry],
    produced: list[tuple[bytes | None, Any]],
) -> None:
    """One call's result for the output under `key`: deletions to `entries` at once,
    everything else to `produced`, for the next step (or to become entries after the last)."""
    if type(result) is Put:  # the common case, without the generator
        produced.append((key_bytes(result.key), result.value))
        return
    for out in _results(result):
        if isinstance(out, Delete):
            entries.append(Entry(record, key_bytes(out.key), None))
        elif isinstance(out, Put):
            produced.append((key_bytes(out.key), out.value))
        else:
            produced.append((key, out))


def entry(record: Record, key: bytes | None, value: Any) -> Entry:
    if type(value) is bytes:  # stored as it is
        return _new_entry(Entry, (record, key, value, None, ()))
    if isinstance(value, Message):
        encoded = value.SerializeToString(deterministic=True)
        return _new_entry(Entry, (record, key, encoded, value, ()))
    return _new_entry(Entry, (record, key, _as_bytes(value), None, ()))


def entry_bytes(record: Record, key: bytes | None, value: Any) -> Entry:
    """`entry` for a writer that stores bytes only (`StoresBytes`): the message is let go
    as soon as it is encoded, so it is freed while still in the CPU's caches and a batch
    waiting for its write holds bytes, not upb messages (about 2 KB less per entry)."""
    if isinstance(value, Message):
        encoded = value.SerializeToString(deterministic=True)
        return _new_entry(Entry, (record, key, encoded, None, ()))
    return entry(record, key, value)  # no message to keep


#: An entry maker: `entry`, or `entry_bytes` for writers that never read `Entry.message`.
MakeEntry = Callable[[Record, "bytes | None", Any], Entry]

#: `Entry(...)` without NamedTuple's Python-level `__new__`: this runs once per output.
_new_entry: Callable[[type[Entry], tuple[Any, ...]], Entry] = tuple.__new__

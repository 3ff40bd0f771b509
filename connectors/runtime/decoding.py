"""Decoding a slice of a batch: each record's message, or the record as poison."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from operator import itemgetter
from typing import Any

from google.protobuf.message import Message

from connectors.config.schemas import TopicSchemas
from connectors.core.errors import FatalError, PoisonError
from connectors.core.records import Record
from connectors.core.transform import Decoded, exhausted

Poison = tuple[int, Record, PoisonError]
#: Decodes `records` whose first has index `first` in its batch: (decoded, poison).
Slicer = Callable[[Sequence[Record], int], tuple[list[Decoded], list[Poison]]]

#: Records decoded and transformed at a time when every transform is sync: few enough that
#: their decoded messages stay in the CPU's caches and out of the peak RSS, many enough that
#: the two clock reads and the call per slice cost nothing per record.
DECODE_SLICE = 1024


def decode_slice(
    decode: Callable[[Record], Any], records: Sequence[Record], first: int = 0
) -> tuple[list[Decoded], list[Poison]]:
    """`records` decoded, with their indices in the batch (the first is `first`). A record
    that does not decode is poison; running out of memory or file descriptors is no record's
    fault and stops the connector with nothing committed past it."""
    decoded: list[Decoded] = []
    poison: list[Poison] = []
    for index, record in enumerate(records, first):
        try:
            decoded.append((index, record, decode(record)))
        except PoisonError as exc:
            poison.append((index, record, exc))
        except Exception as exc:
            if exhausted(exc):
                raise FatalError(
                    f"decode ran out of resources at {record.topic}[{record.partition}]"
                    f"@{record.offset} ({type(exc).__name__}: {exc}); stopping, nothing "
                    f"committed past it"
                ) from exc
            failure = PoisonError("decode", f"{type(exc).__name__}: {exc}", record)
            poison.append((index, record, failure))
    return decoded, poison


def raw_slice(records: Sequence[Record], first: int = 0) -> tuple[list[Decoded], list[Poison]]:
    """A slice of raw topics: each record's value is its message, and nothing is poison."""
    return [(i, r, r.value) for i, r in enumerate(records, first)], []


_topic: Any = itemgetter(0)  # a Record's fields, read in C
_value: Any = itemgetter(4)
_headers: Any = itemgetter(5)


def typed_slice(
    schemas: TopicSchemas, records: Sequence[Record], first: int = 0
) -> tuple[list[Decoded], list[Poison]]:
    """`decode_slice`, in one C call per record when the slice allows: records of one typed
    topic, none with headers (a declared `content-type` is checked record by record) or
    without a value, each parsing. Any other slice, and one where a value does not parse,
    goes record by record, which says which record is poison and why."""
    if records:
        topic = records[0][0]
        schema = schemas.get(topic)
        cls = None if schema is None else schema.message_class
        if (
            cls is not None
            and all(map(topic.__eq__, map(_topic, records)))
            and not any(map(_headers, records))
        ):
            values = list(map(_value, records))
            if None not in values and (messages := _parsed(cls, values)) is not None:
                indices = range(first, first + len(records))
                return list(zip(indices, records, messages, strict=True)), []
    return decode_slice(schemas.decode, records, first)


def _parsed(cls: type[Message], values: list[bytes]) -> list[Message] | None:
    try:
        return list(map(cls.FromString, values))
    except Exception:  # noqa: BLE001 - one does not parse: the slice goes record by record
        return None


def slicer(schemas: TopicSchemas) -> Slicer:
    """How the runner decodes a slice of a batch of these topics: when every one is raw
    bytes there is nothing to decode, and no call per record is made to say so; typed
    topics go through `typed_slice` (which needs `TopicSchemas`, not a stand-in)."""
    if schemas.all_raw:
        return raw_slice
    if isinstance(schemas, TopicSchemas):
        return partial(typed_slice, schemas)
    return partial(decode_slice, schemas.decode)

"""Decoding a slice of a batch: each record's message, or the record as poison."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

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


def slicer(schemas: TopicSchemas) -> Slicer:
    """How the runner decodes a slice of a batch of these topics: when every one is raw
    bytes there is nothing to decode, and no call per record is made to say so."""
    if schemas.all_raw:
        return raw_slice
    return partial(decode_slice, schemas.decode)

"""Where stored data came from, so that a replay never overwrites newer data.

The Redis backend keeps the (topic, partition, offset) each key was last written from;
LMDB keeps, per partition, the last offset the store holds. Positions from different
partitions cannot be ordered; there the last write wins, as in Kafka itself.

A partition is named by its topic, its number and, when the reader knows it, the topic's
id: a topic deleted and created again under the same name starts at offset 0 again, and
positions of the old topic must not make its new records look like replays.

A record sent back by `connector dlq replay` carries the position it was first read from
(`dlq.original.*` headers): it is ordered by that position, not by the offset it was
replayed to, so a dead letter replayed after newer data was stored does not undo it.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping, Sequence
from operator import attrgetter
from typing import NamedTuple

from connectors import (
    DLQ_ORIGINAL_OFFSET,
    DLQ_ORIGINAL_PARTITION,
    DLQ_ORIGINAL_TOPIC,
    Entry,
    PoisonError,
    Record,
    TopicPartition,
)

_OFFSET = struct.Struct(">q")
_key = attrgetter("key")

#: The dead-letter headers that say where a replayed record was first read from.
_ORIGIN = frozenset((DLQ_ORIGINAL_TOPIC, DLQ_ORIGINAL_PARTITION, DLQ_ORIGINAL_OFFSET))


class Origin(NamedTuple):
    """The position a replayed record was first read from."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


def stream(topic: str, partition: int, topic_id: str | None = None) -> str:
    """The name positions give a partition: `topic NUL partition`, and `NUL id` when the
    topic's id is known (the form without it is what stores held before ids were known)."""
    if topic_id:
        return f"{topic}\x00{partition}\x00{topic_id}"
    return f"{topic}\x00{partition}"


def partition_key(tp: TopicPartition, topic_ids: Mapping[str, str] | None = None) -> bytes:
    return stream(tp[0], tp[1], topic_ids.get(tp[0]) if topic_ids else None).encode()


def fit(key: bytes, limit: int) -> bytes:
    """`key`, or a digest of it when it is longer than the store's key limit: a long
    connector name, KV_KEY_PREFIX and topic name together must not make a position
    unstorable. Digests start with 0xff, which no UTF-8 text does."""
    if len(key) <= limit:
        return key
    return b"\xff" + hashlib.blake2b(key, digest_size=24).digest()


def encode_offset(offset: int) -> bytes:
    return _OFFSET.pack(offset)


def decode_offset(stored: bytes | memoryview[int] | None) -> int:
    """The stored offset, or -1 when the partition has written nothing yet."""
    return -1 if stored is None else int(_OFFSET.unpack_from(stored)[0])


def origin(record: Record) -> Origin | None:
    """Where a replayed record was first read from; None for any other record.

    Headers that name part of a position, or name it badly, make the record poison: it
    cannot be ordered against what the store holds."""
    for key, _ in record.headers:
        if key in _ORIGIN:
            break
    else:
        return None  # the usual record, checked without building anything
    found = {key: value for key, value in record.headers if key in _ORIGIN}
    try:
        topic = found[DLQ_ORIGINAL_TOPIC].decode()
        partition = int(found[DLQ_ORIGINAL_PARTITION])
        offset = int(found[DLQ_ORIGINAL_OFFSET])
    except (KeyError, ValueError):
        topic, partition, offset = "", -1, -1
    if not topic or partition < 0 or offset < 0:
        raise PoisonError(
            "write",
            f"replayed record's {', '.join(sorted(_ORIGIN))} headers do not name a "
            "position; it cannot be ordered against the stored data",
            record,
        )
    return Origin(topic, partition, offset)


def reject_keyless(entries: Sequence[Entry]) -> None:
    """A key-value store cannot hold an entry without a key: that record is poison."""
    if all(map(_key, entries)):
        return
    for entry in entries:
        if not entry.key:
            raise PoisonError("write", "entry has no key; the KV writer needs one", entry.source)

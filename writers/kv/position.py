"""Where stored data came from, so that a replay never overwrites newer data.

The Redis backend keeps the (topic, partition, offset) each key was last written from;
LMDB keeps, per partition, the last offset the store holds. Positions from different
partitions cannot be ordered; there the last write wins, as in Kafka itself.
"""

from __future__ import annotations

import struct

from connectors import Entry, PoisonError, TopicPartition

_OFFSET = struct.Struct(">q")


def partition_key(tp: TopicPartition) -> bytes:
    return f"{tp[0]}\x00{tp[1]}".encode()


def encode_offset(offset: int) -> bytes:
    return _OFFSET.pack(offset)


def decode_offset(stored: bytes | None) -> int:
    """The stored offset, or -1 when the partition has written nothing yet."""
    return -1 if stored is None else int(_OFFSET.unpack_from(stored)[0])


def reject_keyless(entries: list[Entry]) -> None:
    """A key-value store cannot hold an entry without a key: that record is poison."""
    for entry in entries:
        if not entry.key:
            raise PoisonError("write", "entry has no key; the KV writer needs one", entry.source)

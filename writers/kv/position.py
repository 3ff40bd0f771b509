"""The (topic, partition, offset) each key was last written from.

Kept beside every key so that a replay of older offsets (after a crash, or a rewind)
never overwrites what a newer record of the same partition wrote. Positions from
different partitions cannot be ordered; there the last write wins, as in Kafka itself.
"""

from __future__ import annotations

import struct

from connectors import Entry, PoisonError

_OFFSET = struct.Struct(">q")


def encode(entry: Entry) -> bytes:
    source = entry.source
    return _OFFSET.pack(source.offset) + f"{source.topic}\x00{source.partition}".encode()


def is_stale(stored: bytes | None, entry: Entry) -> bool:
    """True when `stored` comes from the same partition at a later offset than `entry`."""
    if stored is None:
        return False
    (offset,) = _OFFSET.unpack_from(stored)
    source = entry.source
    return offset > source.offset and stored[8:] == f"{source.topic}\x00{source.partition}".encode()


def reject_keyless(entries: list[Entry]) -> None:
    """A key-value store cannot hold an entry without a key: that record is poison."""
    for entry in entries:
        if not entry.key:
            raise PoisonError("write", "entry has no key; the KV writer needs one", entry.source)

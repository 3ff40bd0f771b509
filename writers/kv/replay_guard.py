"""LMDB: what the store needs to know so that a replayed dead letter never undoes newer data.

LMDB keeps one position per partition, not per key (a per-key position costs a second
random page per put, see `lmdb_store`). That cannot tell whether the key of a replayed
record was written after the record was dead-lettered: the partition's position is always
past it. So the store keeps per-key knowledge only where a replay can need it: for each
Kafka key of a record it did not write (a dead letter, or a record the transform dropped;
the store cannot tell them apart), it remembers the newest offset of that key it wrote
since. Records of the same partition and Kafka key are in Kafka's order; a replayed record
older than that newest offset is stale and skipped.

Most records produce entries, so the set stays small and the hot path pays one dictionary
lookup per entry. `KV_REPLAY_GUARD_KEYS` caps it (a transform that drops most records
would otherwise make it as large as the key space); a replay of a key the store does not
remember is judged by the partition's position alone.

On disk: one value per (scope, partition, Kafka key) in the `guards` database, written in
the batch's own transaction; in memory, a mirror loaded at start and updated only after
the transaction commits.
"""

from __future__ import annotations

import hashlib
import logging
import operator
import struct
from collections.abc import Container, Iterator, Sequence
from typing import Any

from connectors import Batch, Entry, Record
from writers.kv import position
from writers.kv.position import decode_offset, encode_offset

_log = logging.getLogger("connectors.writers.kv")
_LENGTH = struct.Struct(">H")
_source = operator.itemgetter(0)


def unwritten(records: Sequence[Record], entries: Sequence[Entry]) -> Iterator[Record]:
    """The records of a batch that produced no entry (entries come in record order)."""
    if len(entries) == len(records) and list(map(_source, entries)) == list(records):
        return  # the usual batch: one entry per record, nothing to find
    i, n = 0, len(entries)
    for record in records:
        matched = False
        while i < n:
            s = entries[i].source
            if s is record or (
                s.offset == record.offset
                and s.partition == record.partition
                and s.topic == record.topic
            ):
                matched, i = True, i + 1
            else:
                break
        if not matched:
            yield record


class ReplayGuard:
    """The remembered keys of one store scope (connector and key prefix)."""

    def __init__(self, scope: bytes, limit: int) -> None:
        self._scope = scope
        self._limit = limit
        self._known: dict[str, dict[bytes, int]] = {}  # stream → Kafka key → newest offset
        self._count = 0
        self._full_noted = False

    def _key(self, stream: str, kafka_key: bytes) -> bytes:
        digest = hashlib.blake2b(stream.encode() + b"\x00" + kafka_key, digest_size=16)
        return self._scope + digest.digest()

    def load(self, txn: Any, db: Any) -> None:
        self._known.clear()
        self._count = 0
        cursor = txn.cursor(db=db)
        if not cursor.set_range(self._scope):
            return
        size = len(self._scope) + 16
        for key, value in cursor:
            key = bytes(key)
            if not key.startswith(self._scope):
                break
            if len(key) != size:
                continue
            value = bytes(value)
            (length,) = _LENGTH.unpack_from(value, 8)
            stream = value[10 : 10 + length].decode()
            self._known.setdefault(stream, {})[value[10 + length :]] = decode_offset(value)
            self._count += 1

    def would_remember(self, batch: Batch) -> bool:
        """Whether a batch without entries has a record of a key not remembered yet."""
        if self._count >= self._limit:
            return False
        ids = batch.topic_ids
        for record in batch.records:
            if record.key is not None:
                known = self._known.get(
                    position.stream(record.topic, record.partition, ids.get(record.topic))
                )
                if known is None or record.key not in known:
                    return True
        return False

    def begin(self, txn: Any, db: Any) -> Changes:
        return Changes(self, txn, db)

    def _room(self, adding: int) -> bool:
        if self._count + adding < self._limit:
            return True
        if not self._full_noted:
            self._full_noted = True
            _log.warning(
                "KV_REPLAY_GUARD_KEYS=%d reached: further keys whose records were "
                "dead-lettered or dropped are not remembered, and a replay of them is "
                "judged by its partition's position alone",
                self._limit,
            )
        return False


class Changes:
    """What one transaction changes; the mirror takes it only once the transaction commits."""

    def __init__(self, guard: ReplayGuard, txn: Any, db: Any) -> None:
        self._guard, self._txn, self._db = guard, txn, db
        self._changed: dict[tuple[str, bytes], int] = {}
        self._added = 0
        self._streams: dict[str, set[bytes]] = {}

    def remembered(self, stream: str) -> tuple[Container[bytes], Container[bytes]] | None:
        """The keys of `stream` remembered before and in this transaction, None when there
        are none: only writes of those keys must be noted."""
        before = self._guard._known.get(stream)
        now = self._streams.get(stream)
        if before is None and now is None:
            return None
        return (before or {}), (now or set())

    def newest(self, stream: str, kafka_key: bytes) -> int | None:
        """The newest offset of `kafka_key` written since it was remembered (-1: none),
        or None when it is not remembered."""
        found = self._changed.get((stream, kafka_key))
        if found is not None:
            return found
        return self._guard._known.get(stream, {}).get(kafka_key)

    def unwritten(self, stream: str, kafka_key: bytes) -> None:
        """A record of `kafka_key` produced nothing: remember the key from now on."""
        if self.newest(stream, kafka_key) is None and self._guard._room(self._added):
            self._changed[(stream, kafka_key)] = -1
            self._streams.setdefault(stream, set()).add(kafka_key)
            self._added += 1

    def wrote(self, stream: str, kafka_key: bytes, offset: int) -> None:
        """A record of a remembered key at `offset` was written (or its replay applied)."""
        newest = self.newest(stream, kafka_key)
        if newest is not None and offset > newest:
            self._changed[(stream, kafka_key)] = offset

    def flush(self) -> None:
        """Put the changes into the transaction."""
        for (stream, kafka_key), offset in self._changed.items():
            encoded = stream.encode()
            value = encode_offset(offset) + _LENGTH.pack(len(encoded)) + encoded + kafka_key
            self._txn.put(self._guard._key(stream, kafka_key), value, db=self._db)

    def committed(self) -> None:
        """The transaction is durable: the mirror follows."""
        known = self._guard._known
        for (stream, kafka_key), offset in self._changed.items():
            known.setdefault(stream, {})[kafka_key] = offset
        self._guard._count += self._added

"""The process's unpacking loop (`connectors.kafka.fetched_records`) against aiokafka's.

For any sequence of record batches (plain, transactional, committed or aborted, control
markers, offsets with compaction gaps, header keys that are not UTF-8), any fetch position
and any `max_records`, a consumer of `Record`s, and any other consumer, must be handed the
records aiokafka's own loop hands out when every batch is read by its pure-Python reader
with lenient header keys (`Lenient`), and the partition's position must be the same after
every drain: a position ahead of what was handed out would skip records, one behind would
read them twice.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from aiokafka.consumer.fetcher import READ_COMMITTED, READ_UNCOMMITTED
from aiokafka.errors import CorruptRecordException
from aiokafka.record.default_records import DefaultRecordBase
from aiokafka.record.util import calc_crc32c
from aiokafka.structs import TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.core.records import Record
from connectors.kafka.fetched_records import AS_RECORD, RecordPartitionRecords
from connectors.kafka.raw_headers import (
    _PY_BATCH,
    _PY_BUILDER,
    Counter,
    LenientBuilder,
    LenientRecords,
    _LenientBuffer,
    _raw_keys,
    is_raw,
)

TP = TopicPartition("events", 3)
ABORT, COMMIT = 0, 1

header = st.tuples(st.sampled_from(["h", "traceparent", "\udcff-raw"]), st.binary(max_size=3))
record = st.tuples(
    st.integers(1, 3),  # the offset's step from the record before: >1 is a compaction gap
    st.none() | st.binary(max_size=4),
    st.none() | st.binary(max_size=6),
    st.lists(header, max_size=2),
)
batch = st.one_of(
    st.tuples(st.just("data"), st.lists(record, min_size=1, max_size=4)),
    st.tuples(st.just("txn"), st.integers(1, 2), st.lists(record, min_size=1, max_size=4)),
    st.tuples(st.just("end"), st.integers(1, 2), st.sampled_from([ABORT, COMMIT])),
)


def build(specs: list[Any]) -> tuple[bytes, list[tuple[int, int]], int]:
    """The fetched bytes of `specs`, the aborted transactions a broker would name with
    them (producer id, first offset) and the log end."""
    data, aborted, offset = bytearray(), [], 0
    open_txn: dict[int, int] = {}
    for spec in specs:
        if spec[0] == "end":
            _, pid, kind = spec
            control = struct.pack(">hh", 0, kind)
            data += _batch(offset, pid, [(1, control, b"", [])], control=True)
            first = open_txn.pop(pid, None)
            if kind == ABORT and first is not None:
                aborted.append((pid, first))
            offset += 1
            continue
        pid = spec[1] if spec[0] == "txn" else -1
        records = spec[-1]
        if pid != -1:
            open_txn.setdefault(pid, offset)
        data += _batch(offset, pid, records, control=False)
        offset += sum(step for step, *_ in records)
    return bytes(data), aborted, offset


def _batch(base: int, pid: int, records: list[Any], *, control: bool) -> bytes:
    if any(key.startswith("\udcff") for *_, headers in records for key, _ in headers):
        # LenientBuilder starts a batch of its own at a record with such a key: one batch
        # with several is built as it builds one that starts with one, in pure Python
        records = [(step, k, v, _raw_keys(h)) for step, k, v, h in records]
        make: Any = _PY_BUILDER
    else:
        make = LenientBuilder
    builder = make(
        magic=2,
        compression_type=0,
        is_transactional=pid != -1,
        producer_id=pid,
        producer_epoch=0 if pid != -1 else -1,
        base_sequence=0 if pid != -1 else -1,
        batch_size=1 << 20,
    )
    delta = -1
    for step, key, value, headers in records:
        delta += step
        assert builder.append(delta, 1_700_000_000_000 + delta, key, value, headers) is not None
    raw = bytearray(builder.build())
    struct.pack_into(">q", raw, 0, base)
    if control:  # only brokers write control batches: the bit set here, the CRC again
        (attributes,) = struct.unpack_from(">h", raw, DefaultRecordBase.ATTRIBUTES_OFFSET)
        attributes |= DefaultRecordBase.CONTROL_MASK
        struct.pack_into(">h", raw, DefaultRecordBase.ATTRIBUTES_OFFSET, attributes)
        crc = calc_crc32c(bytes(raw[DefaultRecordBase.ATTRIBUTES_OFFSET :]))
        struct.pack_into(">I", raw, DefaultRecordBase.CRC_OFFSET, crc)
    return bytes(raw)


#: aiokafka's own `PartitionRecords`, whatever `connectors.kafka.patches` installed since
AIOKAFKAS: Any = RecordPartitionRecords.__bases__[0]


class Lenient:
    """aiokafka's `MemoryRecords`, every batch read by its pure-Python reader with header
    keys decoded leniently: what aiokafka's loop hands out over these bytes when no batch
    is refused."""

    def __init__(self, data: bytes) -> None:
        self._inner = LenientRecords(data)

    def has_next(self) -> bool:
        return self._inner.has_next()

    def next_batch(self) -> Any:
        if self._inner.next_batch() is None:
            return None
        batch = _PY_BATCH(self._inner.last)
        batch._buffer = _LenientBuffer(batch._buffer)
        return batch


def drain(records: Any, most: int, ours: bool) -> tuple[list[Record], list[int]]:
    """As aiokafka's `FetchResult.getall` drains a partition: up to `most` at a time, the
    position read after each; the records as `Record`s."""
    out: list[Record] = []
    positions: list[int] = []
    while True:
        got = []
        exhausted = True
        for found in records:
            got.append(found)
            if len(got) >= most:
                exhausted = False
                break
        positions.append(records.next_fetch_offset)
        if not ours:
            got = [
                Record(
                    m.topic,
                    m.partition,
                    m.offset,
                    m.key,
                    m.value,
                    tuple(m.headers),
                    m.timestamp,
                )
                for m in got
            ]
        out.extend(got)
        if exhausted:
            return out, positions


@settings(max_examples=300, deadline=None)
@given(
    st.lists(batch, min_size=1, max_size=8),
    st.sampled_from([READ_UNCOMMITTED, READ_COMMITTED]),
    st.integers(1, 7),
    st.integers(0, 40),
    st.booleans(),
)
def test_records_and_positions_are_aiokafkas(
    specs: list[Any], isolation: int, most: int, start: int, check_crcs: bool
) -> None:
    data, aborted, end = build(specs)
    fetch_offset = min(start, end)

    def partition(cls: type, deserializer: Any, records: Any = LenientRecords) -> Any:
        return cls(
            TP,
            records(data),
            list(aborted),
            fetch_offset,
            None,
            deserializer,
            check_crcs,
            isolation,
        )

    theirs = drain(partition(AIOKAFKAS, None, Lenient), most, ours=False)
    raw_keyed = sum(1 for r in theirs[0] if any(is_raw(key) for key, _ in r.headers))
    counted = Counter.lenient
    ours = drain(partition(RecordPartitionRecords, AS_RECORD), most, ours=True)
    assert ours == theirs
    assert all(type(r) is Record for r in ours[0])
    assert Counter.lenient - counted == raw_keyed  # each record read with raw header keys
    assert drain(partition(RecordPartitionRecords, None), most, ours=False) == theirs


def test_a_consumer_of_aiokafka_records_still_gets_aiokafkas() -> None:
    data, _, _ = build([("data", [(1, b"k", b"v", [("\udcff-raw", b"x")])])])
    records = RecordPartitionRecords(
        TP, LenientRecords(data), [], 0, None, None, False, READ_UNCOMMITTED
    )
    (found,) = list(records)
    assert type(found).__name__ == "ConsumerRecord"
    assert (found.key, found.value, tuple(found.headers)) == (b"k", b"v", (("\udcff-raw", b"x"),))


def test_two_refused_batches_in_a_row_the_first_with_nothing_from_the_position_on() -> None:
    """A compacted batch whose records all come before the position, then another batch
    the C reader refuses: its lenient reading reaches the second before handing out
    anything. Both kinds of consumer get the second batch's records, not the error."""
    raw = [("\udcff-raw", b"x")]
    data, _, _ = build([("data", [(1, b"a", b"1", raw)]), ("data", [(1, b"b", b"2", raw)])])
    for deserializer in (AS_RECORD, None):
        records = RecordPartitionRecords(
            TP, LenientRecords(data), [], 1, None, deserializer, False, READ_UNCOMMITTED
        )
        found = list(records)
        assert [(r.offset, r.key, tuple(r.headers)) for r in found] == [(1, b"b", tuple(raw))]
        assert records.next_fetch_offset == 2


def test_a_batch_whose_crc_does_not_match_raises_as_aiokafka_does() -> None:
    """Checked as aiokafka checks (`check_crcs`, on by default): the batch is not handed
    out, the position stays before it, and the error is aiokafka's, which the reader's
    error translation already knows. Unchecked, the records come out as they are."""
    data = bytearray(build([("data", [(1, b"k", b"value", [])])])[0])
    data[data.rindex(b"value") + 4] ^= 0xFF  # the value's last byte, covered by the CRC
    for cls, deserializer in ((AIOKAFKAS, None), (RecordPartitionRecords, AS_RECORD)):
        checked = cls(TP, LenientRecords(bytes(data)), [], 0, None, deserializer, True, 0)
        with pytest.raises(CorruptRecordException, match="Invalid CRC"):
            list(checked)
        assert checked.next_fetch_offset == 0
        unchecked = cls(TP, LenientRecords(bytes(data)), [], 0, None, deserializer, False, 0)
        assert [r.value for r in unchecked] == [b"valu" + bytes([ord("e") ^ 0xFF])]

"""What aiokafka's fetcher hands the runtime's reader: `Record`s, built once per record.

aiokafka builds a `ConsumerRecord` (a dataclass of eleven fields) for every record it
unpacks, and the reader then built a `Record` from it: two objects and two Python-level
constructions a record, about 0.8 µs of a connector's 15-16 µs of CPU per record in the
benchmark's profile. A consumer asks for `Record`s instead by passing `AS_RECORD` as its
`value_deserializer` (and no key deserializer); every other consumer of the process, a
plugin's own included, gets aiokafka's records as ever.

The unpacking loop is this module's own (`RecordPartitionRecords._unpack_records`, installed
for every consumer of the process by `connectors.kafka.patches`): the same rules as
aiokafka's `PartitionRecords._unpack_records` for which batches hold nothing to deliver (a
CRC that does not match, aborted transactions when reading committed records only, control
batches: `_delivers`), with each `Record` built in the loop rather than by a method call,
and the fetcher iterating the loop's generator itself rather than through a Python
`__next__` per record: 540 against 770 ns a record unpacked (RESULTS.md, 2026-12-03 23:03).
A batch whose header keys are not UTF-8 is read again leniently in the same loop
(`connectors.kafka.raw_headers`), for either kind of consumer.
`tests/unit/test_fetched_records.py` holds it to aiokafka's own loop, record for record and
position for position.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from aiokafka import errors as kafka_errors
from aiokafka.consumer import fetcher
from aiokafka.consumer.fetcher import READ_COMMITTED

from connectors.core.records import Record
from connectors.kafka.raw_headers import (
    Counter,
    LenientRecords,
    is_raw,
    lenient_batch,
)

_new_tuple: Any = tuple.__new__  # positional, without the named tuple's keyword handling


def AS_RECORD(value: bytes | None) -> bytes | None:  # noqa: N802 - a marker, used as one
    """The marker `value_deserializer`: with the fetcher patched it is never called (the
    record comes out whole); unpatched, it leaves the value as it is."""
    return value


class RecordPartitionRecords(fetcher.PartitionRecords):  # type: ignore[misc]
    """aiokafka's records of one partition, read leniently (`connectors.kafka.raw_headers`);
    `Record`s for a consumer that asked for them with `AS_RECORD`, aiokafka's own records
    for any other."""

    next_fetch_offset: int
    _records_iterator: Iterator[Any] | None

    def __iter__(self) -> Any:
        """The unpacking generator itself: aiokafka's fetcher drains a partition with
        `for record in partition_records`, and this spares it a Python-level `__next__`
        call per record."""
        if self._records_iterator is not None:
            return self._records_iterator
        return self

    def _unpack_records(self) -> Iterator[Any]:
        """Each batch's records from the position on, the position moved past each record
        once it is built and past each batch at its end (aiokafka's rules); a batch the C
        reader refuses is read again leniently, from the position on."""
        tp = self._tp
        topic, partition = tp.topic, tp.partition
        as_record = self._value_deserializer is AS_RECORD and self._key_deserializer is None
        consumer_record = self._consumer_record
        records = self._records
        while records.has_next():
            batch = records.next_batch()
            if not self._delivers(batch):
                self.next_fetch_offset = batch.next_offset
                continue
            source: Any = batch
            while source is not None:
                try:
                    for record in source:
                        offset = record.offset
                        if offset < self.next_fetch_offset:
                            continue  # before the position: a compressed set fetched again
                        found = (
                            _new_tuple(
                                Record,
                                (
                                    topic,
                                    partition,
                                    offset,
                                    record.key,
                                    record.value,
                                    tuple(record.headers),
                                    record.timestamp,
                                ),
                            )
                            if as_record
                            else consumer_record(tp, record)
                        )
                        self.next_fetch_offset = offset + 1
                        yield found
                    source = None
                except UnicodeDecodeError:
                    if source is not batch or not isinstance(records, LenientRecords):
                        raise  # refused when read leniently too, or not ours to read again
                    source = self._read_leniently(records.last)
            self.next_fetch_offset = batch.next_offset

    def _read_leniently(self, raw: memoryview) -> Iterator[Any]:
        """The batch the C reader refused, read again with header keys decoded leniently;
        each record from the position on that has such keys is counted as it is taken."""
        for record in lenient_batch(raw):
            if record.offset >= self.next_fetch_offset and any(
                is_raw(key) for key, _ in record.headers
            ):
                Counter.lenient += 1
            yield record

    def _delivers(self, batch: Any) -> bool:
        """Whether `batch` holds records to hand out, as aiokafka's loop decides: a CRC
        that does not match raises (the batch is fetched again); an aborted transaction's
        batch (reading committed records only) and a control batch hold none."""
        if self._check_crcs and not batch.validate_crc():
            raise kafka_errors.CorruptRecordException(f"Invalid CRC - {self._tp}")
        if self._isolation_level == READ_COMMITTED and batch.producer_id is not None:
            self._consume_aborted_up_to(batch.base_offset)
            if batch.is_control_batch and self._contains_abort_marker(batch):
                self._aborted_producers.discard(batch.producer_id)
            if batch.is_transactional and batch.producer_id in self._aborted_producers:
                return False
        return not batch.is_control_batch

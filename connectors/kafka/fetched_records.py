"""What aiokafka's fetcher hands the runtime's reader: `Record`s, built once per record.

aiokafka builds a `ConsumerRecord` (a dataclass of eleven fields) for every record it
unpacks, and the reader then built a `Record` from it: two objects and two Python-level
constructions a record, about 0.8 µs of a connector's 15-16 µs of CPU per record in the
benchmark's profile. A consumer asks for `Record`s instead by passing `AS_RECORD` as its
`value_deserializer` (and no key deserializer); every other consumer of the process, a
plugin's own included, gets aiokafka's records as ever.
"""

from __future__ import annotations

from typing import Any

from connectors.core.records import Record
from connectors.kafka.raw_headers import LenientPartitionRecords

_new_tuple: Any = tuple.__new__  # positional, without the named tuple's keyword handling


def AS_RECORD(value: bytes | None) -> bytes | None:  # noqa: N802 - a marker, used as one
    """The marker `value_deserializer`: with the fetcher patched it is never called (the
    record comes out whole); unpatched, it leaves the value as it is."""
    return value


class RecordPartitionRecords(LenientPartitionRecords):
    """aiokafka's records of one partition (read leniently); `Record`s for a consumer that
    asked for them with `AS_RECORD`."""

    def _consumer_record(self, tp: Any, record: Any) -> Any:
        if self._value_deserializer is not AS_RECORD or self._key_deserializer is not None:
            return super()._consumer_record(tp, record)
        return _new_tuple(
            Record,
            (
                tp.topic,
                tp.partition,
                record.offset,
                record.key,
                record.value,
                tuple(record.headers),
                record.timestamp,
            ),
        )

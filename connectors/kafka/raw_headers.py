"""Header keys that are not UTF-8: read, and written again, byte for byte.

Kafka's protocol calls a header key a string, but a broker stores whatever bytes a client
sent, and some clients (librdkafka's `kcat -H`, hand-made producers) send keys that are not
UTF-8. aiokafka decodes every key strictly in its C record reader, so one such record raises
`UnicodeDecodeError` out of the fetcher on every poll: its partition is blocked for good and
the process dies again at each restart.

Reading: a record batch the C reader refuses is read again by aiokafka's pure-Python reader,
with header keys decoded with `surrogateescape` (each byte that is not UTF-8 becomes a lone
surrogate), and the batches after it as usual. The record then goes through the pipeline
like any other (its key and value are intact; Kafka Connect's Java clients would equally
accept it, with the key mangled), and `key.encode("utf-8", "surrogateescape")` gives its
bytes back. Only that batch pays for the slower reader. The loop that does it is the
process's unpacking loop (`connectors.kafka.fetched_records`); this module holds the pieces.

Writing: aiokafka's C batch builder refuses such keys too. A batch whose first record
carries one is built by the pure-Python builder with keys encoded with `surrogateescape`, so
a dead letter (or an output record) carries the very bytes that were read. A record with
such a key arriving in a batch the C builder already started closes that batch first.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from aiokafka.record import default_records
from aiokafka.record.memory_records import MemoryRecords

_C_BUILDER: Any = default_records.DefaultRecordBatchBuilder
_PY_BUILDER: Any = default_records._DefaultRecordBatchBuilderPy  # noqa: SLF001
_PY_BATCH: Any = default_records._DefaultRecordBatchPy  # noqa: SLF001
_LOG_OVERHEAD = struct.calcsize(">qi")  # base offset and batch length, before every batch


class Counter:
    """Records read with lenient header keys so far; the reader compares it once a batch
    and names the records (topic, partition, offset) only when it moved."""

    lenient = 0


def raw_key(key: str) -> bytes:
    """The bytes a header key was read from."""
    return key.encode("utf-8", "surrogateescape")


def is_raw(key: str) -> bool:
    """Whether `key` holds bytes that were not UTF-8 (read with `surrogateescape`)."""
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


# ------------------------------------------------------------------------------ reading


class _LenientSlice(bytearray):
    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:  # noqa: ARG002
        return bytearray.decode(self, encoding, "surrogateescape")


class _LenientBuffer(bytearray):
    """A record buffer whose slices decode with `surrogateescape`: the pure-Python reader
    decodes each header key as `buffer[a:b].decode("utf-8")`."""

    def __getitem__(self, index: Any) -> Any:
        item = bytearray.__getitem__(self, index)
        return _LenientSlice(item) if isinstance(index, slice) else item


def lenient_batch(raw: memoryview) -> Any:
    """aiokafka's pure-Python reading of one record batch, header keys decoded leniently."""
    batch = _PY_BATCH(raw)
    batch._maybe_uncompress()  # noqa: SLF001 - decompression replaces the buffer
    batch._buffer = _LenientBuffer(batch._buffer)  # noqa: SLF001
    return batch


class LenientRecords:
    """aiokafka's `MemoryRecords` over one partition's fetched bytes, keeping the bytes of
    the batch it returned last (a view, no copy) for a lenient second reading."""

    __slots__ = ("_data", "_pos", "_records", "last")

    def __init__(self, data: bytes) -> None:
        self._records = MemoryRecords(data)
        self._data = memoryview(data)
        self._pos = 0
        self.last = self._data[:0]

    def size_in_bytes(self) -> int:
        return int(self._records.size_in_bytes())

    def has_next(self) -> bool:
        return bool(self._records.has_next())

    def next_batch(self) -> Any:
        batch = self._records.next_batch()
        if batch is not None:
            start = self._pos
            (length,) = struct.unpack_from(">i", self._data, start + 8)
            self._pos = start + _LOG_OVERHEAD + length
            self.last = self._data[start : self._pos]
        return batch


# ------------------------------------------------------------------------------ writing


class _RawKey(str):
    __slots__ = ()

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:  # noqa: ARG002
        return str.encode(self, encoding, "surrogateescape")


def _raw_keys(headers: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
    return [(_RawKey(key), value) for key, value in headers]


class LenientBuilder:
    """aiokafka's C record batch builder; the pure-Python one, writing keys back with
    `surrogateescape`, for a batch whose first record has a key the C one refuses."""

    __slots__ = ("_args", "_inner", "_lenient")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args = (args, kwargs)
        self._inner = _C_BUILDER(*args, **kwargs)
        self._lenient = False

    def append(self, offset: int, timestamp: int | None, key: Any, value: Any, headers: Any) -> Any:
        if not self._lenient:
            try:
                return self._inner.append(offset, timestamp, key, value, headers)
            except UnicodeEncodeError:
                if offset != 0:
                    return None  # "batch full": the record starts a batch of its own
                args, kwargs = self._args
                self._inner = _PY_BUILDER(*args, **kwargs)
                self._lenient = True
        return self._inner.append(offset, timestamp, key, value, _raw_keys(headers))

    def set_producer_state(self, producer_id: int, producer_epoch: int, base_sequence: int) -> None:
        self._inner.set_producer_state(producer_id, producer_epoch, base_sequence)

    def build(self) -> Any:
        return self._inner.build()

    def size(self) -> int:
        return int(self._inner.size())

    def size_in_bytes(self, *args: Any, **kwargs: Any) -> int:
        return int(self._inner.size_in_bytes(*args, **kwargs))

    @classmethod
    def size_of(cls, key: Any, value: Any, headers: Any) -> int:
        try:
            return int(_C_BUILDER.size_of(key, value, headers))
        except UnicodeEncodeError:
            return int(_PY_BUILDER.size_of(key, value, _raw_keys(headers)))

    @classmethod
    def estimate_size_in_bytes(cls, key: Any, value: Any, headers: Any) -> int:
        try:
            return int(_C_BUILDER.estimate_size_in_bytes(key, value, headers))
        except UnicodeEncodeError:
            return int(_PY_BUILDER.estimate_size_in_bytes(key, value, _raw_keys(headers)))

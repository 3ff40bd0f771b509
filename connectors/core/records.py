"""The values that flow through a pipeline.

A reader yields a `Batch` of `Record`s; transforms turn each record into zero or more
`Entry`s; a writer receives the entries of one batch in a `WriteBatch`. Every entry keeps
the position of the record it came from, so that writers can name objects and guard
against stale replays, and the runner can commit exactly what was written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter
from typing import Any, NamedTuple

#: `TOPIC_SCHEMAS` value of a topic read as raw bytes, and `KAFKA_OUTPUT_TYPE` of one written so.
RAW = "bytes"
#: Header naming a record's protobuf type (`application/x-protobuf; messageType=<full name>`);
#: a record whose header names another type than its topic's is a contract violation.
TYPE_HEADER = "content-type"
#: W3C trace context headers, carried from source records to what the writers send.
TRACE_HEADERS = ("traceparent", "tracestate")

Headers = tuple[tuple[str, bytes], ...]


class Record(NamedTuple):
    """One Kafka message as read, before decoding. Immutable: transforms never change it.

    A named tuple rather than a frozen dataclass: one is built per message on the hot path,
    and a tuple is several times cheaper to build.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = ()
    timestamp_ms: int = 0

    def header(self, name: str) -> bytes | None:
        """The last value of header `name`, as Kafka clients usually read one."""
        found = None
        for key, value in self.headers:
            if key == name:
                found = value
        return found


TopicPartition = tuple[str, int]

_partition_of: Any = itemgetter(0, 1)  # a Record's (topic, partition), in C
_offset_of: Any = itemgetter(2)  # a Record's offset, in C


@dataclass(frozen=True, slots=True)
class Batch:
    """An ordered run of records, ordered per partition, committed together.

    `next_offsets` maps each partition that the batch covers to the offset to commit once
    every record of the batch has been written (the last offset + 1). It is computed from the
    records, so a batch can never commit past what it holds.

    `topic_ids` names the incarnation of each topic the records came from (Kafka's topic
    id), when the reader knows it: a topic deleted and created again under the same name
    starts at offset 0 again, and a writer that keeps positions must not mistake its new
    records for replays of the old ones.
    """

    records: Sequence[Record]
    topic_ids: Mapping[str, str] = field(default_factory=dict)
    _next: dict[TopicPartition, int] | None = field(
        default=None, init=False, compare=False, repr=False
    )
    _first: dict[TopicPartition, int] | None = field(
        default=None, init=False, compare=False, repr=False
    )
    _heads: tuple[Record, ...] = field(default=(), init=False, compare=False, repr=False)

    @classmethod
    def of_runs(
        cls, runs: Iterable[Sequence[Record]], topic_ids: Mapping[str, str] | None = None
    ) -> Batch:
        """A batch of the records of `runs`, each run the records of one partition as a
        reader fetched them. The offsets are walked per run, where a batch built from its
        records alone first finds the runs record by record (`_walk`): 5 % of a
        pass-through connector's busy time in its profile (bench/RESULTS.md)."""
        records: list[Record] = []
        nexts: dict[TopicPartition, int] = {}
        firsts: dict[TopicPartition, int] = {}
        heads: list[Record] = []
        for run in runs:
            if not run:
                continue
            head = run[0]
            tp = (head[0], head[1])
            records.extend(run)
            heads.append(head)
            after = max(map(_offset_of, run)) + 1
            if after > nexts.get(tp, -1):
                nexts[tp] = after
            firsts.setdefault(tp, head[2])
        batch = cls(records, {} if topic_ids is None else topic_ids)
        object.__setattr__(batch, "_next", nexts)
        object.__setattr__(batch, "_heads", tuple(heads))
        object.__setattr__(batch, "_first", firsts)
        return batch

    @property
    def next_offsets(self) -> dict[TopicPartition, int]:
        """Each partition's offset after its highest record. Walked once per batch (the
        writer, the commit and the metrics all ask); each caller gets its own copy."""
        if self._next is None:
            self._walk()
        return dict(self._next or {})

    @property
    def first_offsets(self) -> dict[TopicPartition, int]:
        """Each partition's first offset in the batch (the first of its first run)."""
        if self._first is None:
            self._walk()
        return dict(self._first or {})

    @property
    def heads(self) -> tuple[Record, ...]:
        """The first record of each run of one partition, in order (one per partition in
        a batch as a reader hands it out): what per-partition metrics look at."""
        if self._first is None:
            self._walk()
        return self._heads

    def _walk(self) -> None:
        """Both offsets of each partition, in one walk. A reader hands records out in runs
        of one partition, so the walk is per run, and over a run's records it is
        itertools' and `max`'s (C), not a Python loop per record."""
        nexts: dict[TopicPartition, int] = {}
        firsts: dict[TopicPartition, int] = {}
        heads: list[Record] = []
        for tp, run in groupby(self.records, _partition_of):
            record = next(run)
            heads.append(record)
            head = record[2]
            after = max(head, max(map(_offset_of, run), default=head)) + 1  # noqa: B031 - the rest of the run
            if after > nexts.get(tp, -1):
                nexts[tp] = after
            firsts.setdefault(tp, head)
        object.__setattr__(self, "_next", nexts)
        object.__setattr__(self, "_heads", tuple(heads))
        object.__setattr__(self, "_first", firsts)

    def __len__(self) -> int:
        return len(self.records)


class Entry(NamedTuple):
    """What a writer stores: a key and a value, or a deletion when `value` is None.

    `message` keeps the decoded protobuf (when there was one) for writers that render
    documents, such as JSON lines; writers that store bytes use `value`.
    """

    source: Record
    key: bytes | None
    value: bytes | None
    message: Any = None
    headers: Headers = ()


@dataclass(frozen=True, slots=True)
class WriteBatch:
    """The entries produced from one `Batch`, in record order, and the batch they came from."""

    batch: Batch
    entries: Sequence[Entry] = field(default_factory=tuple)

    def by_partition(self) -> Mapping[TopicPartition, list[Entry]]:
        groups: dict[TopicPartition, list[Entry]] = {}
        for entry in self.entries:
            groups.setdefault((entry.source.topic, entry.source.partition), []).append(entry)
        return groups

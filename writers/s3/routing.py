"""Which object path each entry of a write goes to, and the entries no path can be given.

Entries are grouped by partition and route (the key of `S3_KEY_TEMPLATE` with the offsets
left out): records of different partitions never share an object, so that each object
holds a run of one partition's offsets, which the replay guard relies on. Within a group,
a record's entries stay together as one unit (never split over two objects). A record any
of whose entries cannot be routed (missing field, bad event time, a delete in protobuf) is
poison as a whole: none of its entries is stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from connectors import Entry, PoisonError, Record, TopicPartition, document
from writers.s3 import formats
from writers.s3.eventtime import event_time
from writers.s3.template import (
    ROUTES_KEPT,
    KeyTemplate,
    MissingField,
    Route,
    record_time_fields,
    time_fields,
)


@dataclass(slots=True)
class Group:
    """The entries of one partition bound for one path, as units of one record each."""

    tp: TopicPartition
    route: Route
    offsets: list[int] = field(default_factory=list)
    units: list[bytes] = field(default_factory=list)
    indices: list[list[int]] = field(default_factory=list)

    def add(self, offset: int, unit: bytes, index: int) -> None:
        if self.offsets and self.offsets[-1] == offset:
            self.units[-1] += unit
            self.indices[-1].append(index)
        else:
            self.offsets.append(offset)
            self.units.append(unit)
            self.indices.append([index])


@dataclass(slots=True)
class Routed:
    groups: list[Group]
    poison: list[PoisonError]  # one per record, in record order


class Router:
    def __init__(
        self,
        template: KeyTemplate,
        *,
        prefix: str,
        extension: str,
        fmt: str,
        time_field: str | None,
    ) -> None:
        self._template = template
        self._prefix = prefix
        self._extension = extension
        self._fmt = fmt
        self._time_field = time_field
        self._needs_doc = (
            fmt == "ndjson"
            or template.uses_values
            or (template.uses_time and time_field is not None)
        )
        # Routes that depend on the record's position and timestamp only (the default
        # layouts), kept by (topic, partition, hour): no key is built per record.
        self._record_only = not template.uses_values and (
            not template.uses_time or time_field is None
        )
        self._by_record: dict[tuple[str, int, int], Route] = {}

    def route(self, entries: Sequence[Entry]) -> Routed:
        placed: list[tuple[Route, bytes] | None] = []
        poison: dict[tuple[TopicPartition, int], PoisonError] = {}
        for entry in entries:
            try:
                placed.append(self._place(entry))
            except PoisonError as exc:
                placed.append(None)
                poison.setdefault(_position(entry.source), exc)
        groups: dict[tuple[TopicPartition, Route], Group] = {}
        for index, (entry, where) in enumerate(zip(entries, placed, strict=True)):
            if where is None or _position(entry.source) in poison:
                continue
            route, unit = where
            tp = (entry.source.topic, entry.source.partition)
            group = groups.get((tp, route))
            if group is None:
                group = groups[(tp, route)] = Group(tp, route)
            group.add(entry.source.offset, unit, index)
        return Routed(list(groups.values()), list(poison.values()))

    def _place(self, entry: Entry) -> tuple[Route, bytes]:
        source = entry.source
        doc: Any = document(entry) if self._needs_doc else None
        if not self._record_only:
            return self._route(source, doc), formats.unit(entry, self._fmt, doc)
        hour = max(source.timestamp_ms, 0) // 3_600_000 if self._template.uses_time else 0
        known = (source.topic, source.partition, hour)
        route = self._by_record.get(known)
        if route is None:
            if len(self._by_record) >= ROUTES_KEPT:
                self._by_record.clear()
            route = self._by_record[known] = self._route(source, doc)
        return route, formats.unit(entry, self._fmt, doc)

    def _route(self, source: Record, doc: Any) -> Route:
        fields = {"topic": source.topic, "partition": str(source.partition)}
        try:
            if self._template.uses_time and self._time_field is None:
                fields.update(record_time_fields(source.timestamp_ms))
            elif self._template.uses_time and self._time_field is not None:
                fields.update(time_fields(event_time(doc, self._time_field)))
            route = self._template.route(self._prefix, self._extension, fields, doc)
        except MissingField as exc:
            raise PoisonError(
                "write", f"S3_KEY_TEMPLATE cannot name an object for it: {exc}", source
            ) from exc
        return route


def _position(record: Record) -> tuple[TopicPartition, int]:
    return (record.topic, record.partition), record.offset

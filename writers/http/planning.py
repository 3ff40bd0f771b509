"""How the entries of a batch become requests, each under an idempotency key that a replay
reproduces.

Every entry is routed first (method and URL, `routing`). Entries of one partition going
to one URL form a lane; a lane's requests are sent one after the other in offset order,
lanes in parallel, so the receiver sees the changes to one resource in the order they
were made.

Batch mode cuts a lane's requests at offset boundaries derived from the records
themselves, never from where a poll happened to end: records whose `offset //
HTTP_BATCH_MAX_MESSAGES` is equal (an aligned bucket) go in one request, so a replay after
a crash or a rebalance, and a resend of what failed, form the same requests again. A
request also ends where the method changes (an upsert, then a deletion sent with
`HTTP_DELETE_METHOD`, which travels alone and without a body), where a record with many
outputs would take it past the cap (the outputs of one record always travel together),
and where an earlier attempt at the batch split a rejected request (`cuts`).

Keys (`HTTP_IDEMPOTENCY_HEADER`):

- batch mode: `<connector>:<topic>:<partition>:<first>-<last>:<digest>`, the offsets of the
  request's first and last record and 16 hex digits of a hash of its method, URL and body.
  The range tells a person where the request came from; the digest makes the key name the
  content: if a replay's bucket holds other documents (a record dead-lettered the first
  time, a transform changed by a deploy), its key is new, so a receiver that deduplicates
  never drops a document it has not seen, and the same documents always come under the
  same key;
- per-record mode: `<connector>:<topic>:<partition>:<offset>` (`.<n>` for the n-th extra
  output of one record).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from connectors import Entry

CONTENT_TYPES = {"json": "application/json", "ndjson": "application/x-ndjson"}
Lane = tuple[str, int, str]
"""(topic, partition, URL): the requests of one lane go one after the other."""


@dataclass(frozen=True, slots=True)
class Routed:
    """One entry of the batch, where it goes and what it reads as."""

    index: int  # in the WriteBatch.entries the writer was given
    entry: Entry
    method: str
    url: str
    document: Any  # the body's document for it (enveloped when HTTP_ENVELOPE=true)
    bodiless: bool = False  # a deletion sent with HTTP_DELETE_METHOD

    @property
    def lane(self) -> Lane:
        source = self.entry.source
        return (source.topic, source.partition, self.url)

    @property
    def offset(self) -> int:
        return self.entry.source.offset


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request: what it carries, and under which key."""

    method: str
    url: str
    items: tuple[Routed, ...]
    content: bytes | None
    key: str

    @property
    def indices(self) -> list[int]:
        return [item.index for item in self.items]

    @property
    def first(self) -> Entry:
        return self.items[0].entry


def render_body(documents: Sequence[Any], fmt: str, as_array: bool) -> bytes:
    if fmt == "ndjson":
        return "".join(json.dumps(d, separators=(",", ":")) + "\n" for d in documents).encode()
    return json.dumps(documents if as_array else documents[0], separators=(",", ":")).encode()


def record_groups(items: Sequence[Routed]) -> Iterator[list[Routed]]:
    """The items of one lane, record by record (the outputs of a record are adjacent);
    outputs of one record sent with different methods are apart."""
    for _, group in itertools.groupby(items, key=lambda r: (r.offset, r.method, r.bodiless)):
        yield list(group)


def stream(connector: str, entry: Entry) -> str:
    return f"{connector}:{entry.source.topic}:{entry.source.partition}"


def batch_request(connector: str, items: Sequence[Routed], fmt: str) -> Request:
    """A batch-mode request for `items` (one lane, one method), keyed by range and digest."""
    first = items[0]
    content = None if first.bodiless else render_body([i.document for i in items], fmt, True)
    digest = hashlib.blake2b(digest_size=8)
    digest.update(f"{first.method} {first.url}\n".encode())
    digest.update(content or b"")
    key = f"{stream(connector, first.entry)}:{first.offset}-{items[-1].offset}:{digest.hexdigest()}"
    return Request(first.method, first.url, tuple(items), content, key)


def record_request(connector: str, item: Routed, ordinal: int, fmt: str) -> Request:
    """A per-record request: one output of one record under its per-record key."""
    content = None if item.bodiless else render_body([item.document], fmt, False)
    key = f"{stream(connector, item.entry)}:{item.offset}" + (f".{ordinal}" if ordinal else "")
    return Request(item.method, item.url, (item,), content, key)


def lane_requests(items: Sequence[Routed], size: int, cuts: set[int]) -> list[list[Routed]]:
    """The requests of one lane in batch mode: aligned buckets of `size` offsets, cut where
    the method changes, at the cap, alone for a bodiless deletion, and at each offset in
    `cuts`; a record's outputs never split."""
    requests: list[list[Routed]] = []
    current: list[Routed] = []
    for group in record_groups(items):
        head = group[0]
        if current and (
            head.offset // size != current[0].offset // size
            or head.offset in cuts
            or head.method != current[0].method
            or head.bodiless
            or current[0].bodiless
            or len(current) + len(group) > size
        ):
            requests.append(current)
            current = []
        current.extend(group)
    if current:
        requests.append(current)
    return requests


def lanes(routed: Sequence[Routed]) -> dict[Lane, list[Routed]]:
    grouped: dict[Lane, list[Routed]] = {}
    for item in routed:
        grouped.setdefault(item.lane, []).append(item)
    return grouped


def halves(items: Sequence[Routed]) -> tuple[list[Routed], list[Routed]] | None:
    """A rejected request's items in two halves by record, None when it holds one record."""
    groups = list(record_groups(items))
    if len(groups) == 1:
        return None
    half = len(groups) // 2
    return list(itertools.chain(*groups[:half])), list(itertools.chain(*groups[half:]))

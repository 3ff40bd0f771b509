"""What one entry reads as in a request body, and where it is sent.

Without `HTTP_ENVELOPE` the document is the output alone (`connectors.document`: a
protobuf's JSON mapping, a JSON value, or `{"key_b64", "value_b64"}` for other bytes and
for deletions). With `HTTP_ENVELOPE=true` the output travels as `value` beside the record
key and where it came from::

    {"key": "u0042", "topic": "comm-prefs.v1", "partition": 1, "offset": 815,
     "timestamp_ms": 1767225600815, "value": {...}}

`key` is the output's key as text (`key_b64` instead when it is not UTF-8, null when there
is none); `value` is null for a deletion.

A deletion (a `Delete`, or a tombstone passed through) is sent with `HTTP_DELETE_METHOD`
when that is set, alone and without a body (`DELETE /contacts/{key}`); otherwise with
`HTTP_METHOD`, as any other document.
"""

from __future__ import annotations

import base64
from typing import Any

from connectors import Entry, PoisonError, document
from writers.http.planning import Routed
from writers.http.routing import Template, Unroutable
from writers.http.settings import HTTPSettings


def envelope(entry: Entry, value: Any) -> dict[str, Any]:
    source = entry.source
    doc: dict[str, Any] = {}
    if entry.key is None:
        doc["key"] = None
    else:
        try:
            doc["key"] = entry.key.decode()
        except UnicodeDecodeError:
            doc["key_b64"] = base64.b64encode(entry.key).decode()
    doc.update(
        topic=source.topic,
        partition=source.partition,
        offset=source.offset,
        timestamp_ms=source.timestamp_ms,
        value=None if entry.value is None else value,
    )
    return doc


def route(index: int, entry: Entry, template: Template, settings: HTTPSettings) -> Routed:
    """`entry` routed: its method, URL and document; PoisonError (stage `write`) naming its
    record when HTTP_URL names a field its output lacks."""
    output = document(entry)
    try:
        url = template.render(entry, output)
    except Unroutable as exc:
        raise PoisonError("write", str(exc), entry.source) from None
    deletion = entry.value is None and settings.delete_method is not None
    method = settings.delete_method if deletion and settings.delete_method else settings.method
    shown = envelope(entry, output) if settings.envelope else output
    return Routed(index, entry, method, url, shown, bodiless=deletion)

"""What an object's bytes look like: NDJSON documents or length-delimited protobuf, gzipped.

NDJSON line per entry:

- an entry with a decoded protobuf `message`: its proto3 JSON mapping (field names as in
  the `.proto`), which is what Athena, BigQuery or DuckDB read as a table;
- otherwise a value that is JSON (a transform returned a dict): that document as is;
- otherwise `{"key_b64": ..., "value_b64": ...}`, with `value_b64` null for a deletion.

Protobuf: each entry's serialized value prefixed by its length as a varint (Java's
`writeDelimitedTo`, Go's `protodelim`). It cannot express a deletion, so a delete entry is
refused as poison instead of being dropped.

Gzip output carries mtime 0, so the same entries always give the same bytes and a replayed
object is byte-identical (same ETag) to the one it overwrites.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator, Sequence
from typing import Any

from connectors import Entry, PoisonError, document

CONTENT_TYPES = {"ndjson": "application/x-ndjson", "protobuf": "application/x-protobuf"}
EXTENSIONS = {"ndjson": "ndjson", "protobuf": "protodelim"}


def extension(fmt: str, compression: str) -> str:
    return EXTENSIONS[fmt] + (".gz" if compression == "gzip" else "")


def content_type(fmt: str) -> str:
    """What the object holds once decoded; gzip is said by `content_encoding`, so a reader
    (or an HTTP client that decodes transparently) knows both."""
    return CONTENT_TYPES[fmt]


def content_encoding(compression: str) -> str | None:
    return "gzip" if compression == "gzip" else None


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def unit(entry: Entry, fmt: str, doc: Any = None) -> bytes:
    """One entry's bytes in an object: an NDJSON line (of `doc`, when the caller already has
    the entry's document) or a length-delimited value; PoisonError for a delete in protobuf."""
    if fmt == "ndjson":
        shown = document(entry) if doc is None else doc
        return json.dumps(shown, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
    if entry.value is None:
        raise PoisonError(
            "write",
            "S3_FORMAT=protobuf cannot store a deletion (tombstone or Delete output); "
            "use S3_FORMAT=ndjson to keep them",
            entry.source,
        )
    return _varint(len(entry.value)) + entry.value


def pack(raw: bytes, compression: str) -> bytes:
    """The uploaded body of `raw`: gzip with mtime 0 (deterministic), or as is."""
    if compression == "gzip":
        return gzip.compress(raw, compresslevel=6, mtime=0)
    return raw


def render(entries: Sequence[Entry], fmt: str, compression: str) -> bytes:
    """The object body for `entries`, in order; raises PoisonError for a delete in protobuf."""
    return pack(b"".join(unit(e, fmt) for e in entries), compression)


def decompress(data: bytes, compression: str) -> bytes:
    return gzip.decompress(data) if compression == "gzip" else data


def ndjson_documents(data: bytes) -> list[Any]:
    """The documents of an uncompressed NDJSON body."""
    return [json.loads(line) for line in data.decode().splitlines() if line]


def delimited_values(data: bytes) -> Iterator[bytes]:
    """The values of an uncompressed length-delimited body; raises ValueError if truncated."""
    pos = 0
    while pos < len(data):
        size = shift = 0
        while True:
            if pos >= len(data):
                raise ValueError("truncated varint")
            byte = data[pos]
            pos += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if pos + size > len(data):
            raise ValueError("truncated value")
        yield data[pos : pos + size]
        pos += size

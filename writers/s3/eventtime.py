"""Event time for `{year}`, `{month}`, `{day}`, `{hour}`: a field of the output, or the record's
Kafka timestamp.

`S3_TIME_FIELD` names a field of the output document (dotted for a nested one) holding:

- an RFC 3339 string with an offset (`2026-11-30T23:59:59.5+01:00`, `...Z`), which is also
  how a `google.protobuf.Timestamp` field appears in the output's JSON mapping;
- epoch seconds or milliseconds, as a number or a string of digits (64-bit integers are
  strings in the protobuf JSON mapping): a magnitude of 10^11 or more is read as
  milliseconds (10^11 seconds is the year 5138, 10^11 ms is March 1973);
- an object `{"seconds": ..., "nanos": ...}` (a Timestamp a transform built as a dict).

Anything else (a date without offset, a boolean, text) cannot be placed in time: the record
is poison (`MissingField`), so no object lands under a wrong day.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from writers.s3.template import MissingField, lookup

MILLIS_FROM = 10**11
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def record_time(timestamp_ms: int) -> datetime:
    """The UTC time of a Kafka record timestamp; records without one (<= 0) land on
    1970-01-01, as the default layout always did."""
    return datetime.fromtimestamp(max(timestamp_ms, 0) / 1000.0, tz=UTC)


def event_time(document: Any, path: str) -> datetime:
    """The UTC time in field `path` of `document`; MissingField if absent or unparseable."""
    return parse_time(lookup(document, path), path)


def parse_time(value: Any, path: str = "value") -> datetime:
    try:
        return _convert(value)
    except (TypeError, ValueError, OverflowError, OSError) as exc:
        raise MissingField(
            f"the output's field {path!r} is not an event time ({exc}): expected an RFC 3339 "
            "timestamp with offset, or epoch seconds or milliseconds"
        ) from None


def _convert(value: Any) -> datetime:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _epoch(value)
    if isinstance(value, str):
        return _epoch(float(value)) if _NUMBER.match(value) else _rfc3339(value)
    if isinstance(value, dict) and "seconds" in value:
        return _epoch(float(value["seconds"]) + float(value.get("nanos", 0)) / 1e9)
    raise TypeError(f"a {type(value).__name__}")


def _epoch(number: float) -> datetime:
    seconds = number / 1000.0 if abs(number) >= MILLIS_FROM else number
    return datetime.fromtimestamp(seconds, tz=UTC)


def _rfc3339(text: str) -> datetime:
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset")
    return when.astimezone(UTC)

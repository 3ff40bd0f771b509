"""`S3_KEY_TEMPLATE`: object keys routed by what the records hold, one path segment per value.

A template is a key with placeholders, relative to `S3_PREFIX`; the extension is appended::

    audit/account={value.account_id}/dt={year}-{month}-{day}/{topic}-{partition}-{first_offset}-{last_offset}

Placeholders: `{topic}`, `{partition}`, `{first_offset}` and `{last_offset}` (20 digits,
zero-padded, so keys sort in offset order), `{year}`, `{month}`, `{day}`, `{hour}` (UTC, of
the event time) and `{value.<field>[.<field>...]}`, a field of the output document. `{{` and
`}}` are literal braces. The four Kafka placeholders are required: they are what makes every
object's name unique and lets the replay guard find, after a crash, the objects past the
committed offset (see `replay`).

Values are escaped so that no value can leave its path segment: everything but ASCII letters,
digits and `_.-~` is percent-encoded (so `/` becomes `%2F`), and a leading `.` becomes `%2E`
(no `.` or `..` segment). A missing, null, empty or non-scalar value is not rendered: the
record is poison (`MissingField`), never stored under a made-up path.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import quote

KAFKA_FIELDS = ("topic", "partition", "first_offset", "last_offset")
TIME_FIELDS = ("year", "month", "day", "hour")
_VALUE = re.compile(r"^value(\.[A-Za-z_][A-Za-z0-9_]*)+$")
MAX_KEY_BYTES = 1024
"""S3's (and R2's) longest object key, in UTF-8 bytes."""
ROUTES_KEPT = 100_000
"""Routes remembered by the values they were made of, before the memory starts over."""

DEFAULT = "{topic}/{partition}/{first_offset}-{last_offset}"
DEFAULT_DATED = "{topic}/dt={year}-{month}-{day}/{partition}/{first_offset}-{last_offset}"


class MissingField(ValueError):
    """A record's output cannot name its object: the record is poison, not the template."""


@lru_cache(maxsize=65_536)
def escape(value: str) -> str:
    """`value` as the content of one path segment: never a `/`, never `.` or `..`."""
    escaped = quote(value, safe="")
    return "%2E" + escaped[1:] if escaped.startswith(".") else escaped


def lookup(document: Any, path: str) -> Any:
    """The field at dotted `path` of an output document; MissingField if absent or null."""
    found = document
    for name in path.split("."):
        if not isinstance(found, dict) or found.get(name) is None:
            raise MissingField(f"the output has no field {path!r}")
        found = found[name]
    return found


def scalar(value: Any, path: str) -> str:
    """A field's value as path text: strings, numbers and booleans (as JSON writes them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        text = str(value)
        if text:
            return text
        raise MissingField(f"the output's field {path!r} is empty")
    raise MissingField(f"the output's field {path!r} is a {type(value).__name__}, not a scalar")


@dataclass(frozen=True, slots=True)
class Route:
    """The key of every object of one path: constant text around the two offsets."""

    before: str
    between: str
    after: str
    _pattern: list[re.Pattern[str]] = field(
        default_factory=list, repr=False, compare=False, hash=False
    )

    def key(self, first: int, last: int) -> str:
        return f"{self.before}{first:020}{self.between}{last:020}{self.after}"

    @property
    def folder(self) -> str:
        """The folder to list for this path's objects: everything before `{first_offset}`
        up to its last `/` (empty: the whole bucket)."""
        return self.before.rpartition("/")[0]

    def start_after(self, offset: int) -> str:
        """A key that sorts just before every object of this path whose first offset is
        >= `offset`."""
        return f"{self.before}{offset:020}"

    def offsets(self, key: str) -> tuple[int, int] | None:
        """(first, last) of a key of this path; None for any other key."""
        if not self._pattern:  # compiled on first use: most routes are never listed
            text = re.escape(self.before) + r"(\d{20})" + re.escape(self.between)
            self._pattern.append(re.compile(text + r"(\d{20})" + re.escape(self.after) + r"\Z"))
        found = self._pattern[0].match(key)
        return None if found is None else (int(found.group(1)), int(found.group(2)))


@dataclass(frozen=True, slots=True)
class _Part:
    literal: str
    name: str | None


class KeyTemplate:
    """A parsed, validated template. Raises ValueError (a config error) when the text is not
    a usable template; `route` raises MissingField (poison) for a record it cannot place."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._parts = _parse(text)
        names = [p.name for p in self._parts if p.name is not None]
        self.uses_time = any(name in TIME_FIELDS for name in names)
        self.uses_values = any(name.startswith("value.") for name in names)
        self._named = [p.name for p in self._parts if p.name and not p.name.endswith("_offset")]
        #: The output fields routed by, as dotted paths (`{value.a.b}` -> `a.b`).
        self.value_fields = [n.removeprefix("value.") for n in names if n.startswith("value.")]
        self._routes: dict[tuple[str, ...], Route] = {}

    def route(self, prefix: str, extension: str, fields: dict[str, str], document: Any) -> Route:
        """The route of a record: `fields` holds topic, partition and (when used) the time
        parts; value fields are read from `document`. Routes are kept by the values they
        were made of: most records of a write share a few."""
        values = tuple(escape(self._value(name, fields, document)) for name in self._named)
        route = self._routes.get(values)
        if route is None:
            if len(self._routes) >= ROUTES_KEPT:
                self._routes.clear()
            route = self._routes[values] = self._build(prefix, extension, values)
        return route

    def _build(self, prefix: str, extension: str, values: tuple[str, ...]) -> Route:
        texts: list[str] = [prefix + "/" if prefix else ""]
        cuts: list[int] = []
        given = iter(values)
        for part in self._parts:
            texts.append(part.literal)
            if part.name in ("first_offset", "last_offset"):
                cuts.append(len(texts))
            elif part.name is not None:
                texts.append(next(given))
        texts.append("." + extension)
        first, last = cuts
        route = Route("".join(texts[:first]), "".join(texts[first:last]), "".join(texts[last:]))
        if len(route.key(0, 0).encode()) > MAX_KEY_BYTES:
            raise MissingField(f"the object key would be longer than {MAX_KEY_BYTES} bytes")
        return route

    @staticmethod
    def _value(name: str, fields: dict[str, str], document: Any) -> str:
        if name.startswith("value."):
            path = name[len("value.") :]
            return scalar(lookup(document, path), path)
        return fields[name]


def time_fields(when: datetime) -> dict[str, str]:
    """`{year}`..`{hour}` of a UTC time; computed once per hour seen."""
    return _hour_fields(int(when.timestamp() // 3600))


def record_time_fields(timestamp_ms: int) -> dict[str, str]:
    """`{year}`..`{hour}` of a Kafka record timestamp; none (<= 0) is 1970-01-01T00."""
    return _hour_fields(max(timestamp_ms, 0) // 3_600_000)


@lru_cache(maxsize=4096)
def _hour_fields(hour: int) -> dict[str, str]:
    when = datetime.fromtimestamp(hour * 3600, tz=UTC)
    return {
        "year": f"{when.year:04d}",
        "month": f"{when.month:02d}",
        "day": f"{when.day:02d}",
        "hour": f"{when.hour:02d}",
    }


def _parse(text: str) -> list[_Part]:
    """The literal/placeholder parts of `text`; ValueError says what is wrong with it."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(
            f"unbalanced braces ({exc}); a literal brace is written {{{{ or }}}}"
        ) from None
    parts: list[_Part] = []
    for literal, name, spec, conversion in parsed:
        if name is not None:
            if spec or conversion:
                raise ValueError(f"{{{name}}}: no format or conversion is accepted")
            if name not in KAFKA_FIELDS + TIME_FIELDS and not _VALUE.match(name):
                raise ValueError(
                    f"unknown placeholder {{{name}}}; known: {{topic}}, {{partition}}, "
                    "{first_offset}, {last_offset}, {year}, {month}, {day}, {hour}, "
                    "{value.<field>}"
                )
        parts.append(_Part(literal, name))
    _check_shape(text, parts)
    return parts


def _check_shape(text: str, parts: list[_Part]) -> None:
    """The required placeholders once each, in order, and no empty, `.` or `..` segment."""
    names = [p.name for p in parts if p.name is not None]
    for required in KAFKA_FIELDS:
        if required not in names:
            raise ValueError(
                f"{{{required}}} is missing; {{topic}}, {{partition}}, {{first_offset}} and "
                "{last_offset} are required, they make every object name unique"
            )
    for once in ("first_offset", "last_offset"):
        if names.count(once) > 1:
            raise ValueError(f"{{{once}}} may appear only once")
    if names.index("first_offset") > names.index("last_offset"):
        raise ValueError("{first_offset} must come before {last_offset}")
    sample = "".join(p.literal + ("x" if p.name else "") for p in parts)
    for segment in sample.split("/"):
        if segment in ("", ".", ".."):
            raise ValueError(
                f"{text!r} has an empty, '.' or '..' path segment (or a leading or trailing '/')"
            )

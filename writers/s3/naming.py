"""The default layout's object keys (`template.DEFAULT`, `template.DEFAULT_DATED`), named
by what an object holds, so a replay rewrites the same name; for tools and tests that read
them back.

    {S3_PREFIX}/{topic}[/dt=YYYY-MM-DD]/{partition}/{first:020}-{last:020}.{ext}

`first` and `last` are the Kafka offsets of the first and last record stored in the
object. Zero padding makes the lexical order of keys the offset order, which is what lets
the writer find, with one `ListObjectsV2 start-after` request, the objects a crashed run
left behind past the committed offset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

_NAME = re.compile(r"^(\d{20})-(\d{20})\.")


@dataclass(frozen=True, slots=True)
class Folder:
    """Where the objects of one partition (and one day, when partitioned by date) live."""

    prefix: str
    topic: str
    partition: int
    day: str | None = None

    @property
    def path(self) -> str:
        parts = [self.prefix, self.topic]
        if self.day is not None:
            parts.append(f"dt={self.day}")
        parts.append(str(self.partition))
        return "/".join(part for part in parts if part)

    def key(self, first: int, last: int, extension: str) -> str:
        return f"{self.path}/{first:020}-{last:020}.{extension}"

    def start_after(self, offset: int) -> str:
        """A key that sorts just before every object whose first offset is >= `offset`."""
        return f"{self.path}/{offset:020}"


def offsets_of(key: str) -> tuple[int, int] | None:
    """(first, last) from an object key written by this writer; None for any other key."""
    found = _NAME.match(key.rsplit("/", 1)[-1])
    if found is None:
        return None
    return int(found.group(1)), int(found.group(2))


def day_of(timestamp_ms: int) -> str:
    """The UTC date of a record timestamp; records without one (<= 0) land on 1970-01-01."""
    seconds = max(timestamp_ms, 0) / 1000.0
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%d")

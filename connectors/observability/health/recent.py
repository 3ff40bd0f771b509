"""What the status page shows of the pipeline's recent past: records per second and the
last dead letters.

The runner notes each committed batch and each dead letter sent (`processed`,
`dead_lettered`) on its loop; the health server reads a `snapshot()` from its own thread,
so both sides take one lock, once per batch. Only the last `keep` dead letters are kept:
the page shows what happened lately, the dead-letter topic holds them all.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from connectors.core.dead_letters import DeadLetter

__all__ = ["KEEP", "Recent", "RecentLetter"]

#: How many dead letters the page shows.
KEEP = 20


@dataclass(frozen=True, slots=True)
class RecentLetter:
    """One dead letter as the page shows it; `at` is the wall-clock time it was sent."""

    topic: str
    partition: int
    offset: int
    stage: str
    error: str
    at: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "stage": self.stage,
            "error": self.error,
            "at": round(self.at, 3),
        }


class Recent:
    """Records processed (committed, dead letters included) and the last `keep` dead
    letters; `records_per_s` is the rate over the last `window_s` seconds."""

    def __init__(
        self,
        keep: int = KEEP,
        window_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._letters: deque[RecentLetter] = deque(maxlen=keep)
        self._batches: deque[tuple[float, int]] = deque()
        self._window_s = window_s
        self._clock = clock
        self._wall = wall
        self._started = clock()
        self._records = 0
        self._lock = threading.Lock()

    def processed(self, count: int) -> None:
        now = self._clock()
        with self._lock:
            self._records += count
            self._batches.append((now, count))
            self._expire(now)

    def dead_lettered(self, letters: Iterable[DeadLetter]) -> None:
        at = self._wall()
        found = [
            RecentLetter(
                d.record.topic,
                d.record.partition,
                d.record.offset,
                d.stage,
                d.message
                if d.message.startswith(d.error_class)
                else f"{d.error_class}: {d.message}",
                at,
            )
            for d in letters
        ]
        with self._lock:
            self._letters.extend(found)

    def _expire(self, now: float) -> None:
        batches = self._batches
        while batches and batches[0][0] < now - self._window_s:
            batches.popleft()

    def snapshot(self) -> dict[str, Any]:
        """`records`, `records_per_s` and `dead_letters` (newest first), for `/status.json`."""
        now = self._clock()
        with self._lock:
            self._expire(now)
            recent = sum(count for _, count in self._batches)
            letters = [letter.as_dict() for letter in reversed(self._letters)]
            records = self._records
        span = min(self._window_s, max(now - self._started, 1e-3))
        return {
            "records": records,
            "records_per_s": round(recent / span, 1),
            "dead_letters": letters,
        }

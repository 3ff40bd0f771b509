"""When poison stops being a few bad records and becomes a broken pipeline."""

from __future__ import annotations

from collections import deque


class Breaker:
    """Trips when more than `max_ratio` of the last `window` records were poison.

    It waits for a tenth of the window (at least 10 records) before judging, so the first
    bad record of a run does not count as 100 % poison.
    """

    def __init__(self, max_ratio: float, window: int) -> None:
        self._max_ratio = max_ratio
        self._window = window
        self._seen = 0
        # Where the poison records of the window are, by outcome number: healthy records
        # are only counted, so a batch of them costs one call and no per-record work.
        self._poison_at: deque[int] = deque()
        self._min = max(10, window // 10)

    def record(self, poison: bool) -> None:
        if poison:
            self._poison_at.append(self._seen)
        self._seen += 1
        self._expire()

    def record_ok(self, count: int) -> None:
        """`count` healthy records in a row."""
        self._seen += count
        self._expire()

    def _expire(self) -> None:
        oldest = self._seen - self._window
        poison_at = self._poison_at
        while poison_at and poison_at[0] < oldest:
            poison_at.popleft()

    @property
    def ratio(self) -> float:
        counted = min(self._seen, self._window)
        return len(self._poison_at) / counted if counted else 0.0

    @property
    def tripped(self) -> bool:
        return min(self._seen, self._window) >= self._min and self.ratio > self._max_ratio

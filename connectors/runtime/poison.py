"""When poison stops being a few bad records and becomes a broken pipeline."""

from __future__ import annotations

import logging
from collections import deque

from connectors.config.settings import DeadLetterSettings
from connectors.core.dead_letters import DeadLetter
from connectors.core.errors import FatalError, PoisonError
from connectors.core.records import Record
from connectors.runtime.decoding import Poison
from connectors.runtime.instruments import Instruments

_log = logging.getLogger("connectors.runtime.runner")


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


class Judge:
    """Turns poison into dead letters, unless it must stop the connector: `ON_ERROR=fail`,
    or the breaker tripped (a broken pipeline, not a few bad records)."""

    def __init__(
        self, on_error: str, settings: DeadLetterSettings, instruments: Instruments
    ) -> None:
        self._fail = on_error == "fail"
        self._settings = settings
        self._instruments = instruments
        self._breaker = Breaker(settings.max_ratio, settings.window)

    def letters(self, count: int, poison: list[Poison]) -> list[DeadLetter]:
        """Dead letters for `poison` (sorted by index) among `count` records; healthy
        records reach the breaker as counts of the runs between poison ones."""
        breaker = self._breaker
        letters: list[DeadLetter] = []
        judged = 0
        for index, record, error in poison:
            breaker.record_ok(index - judged)
            judged = index + 1
            letters.append(self.letter(record, error))
        breaker.record_ok(count - judged)
        return letters

    def letter(self, record: Record, exc: PoisonError) -> DeadLetter:
        """A dead letter for `record`, unless poison must stop the connector."""
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        self._instruments.failed(exc.stage)
        if self._fail:
            raise FatalError(
                f"{exc.stage} failed for {where}: {exc}; ON_ERROR=fail, nothing committed past it"
            ) from exc
        self._breaker.record(True)
        if self._breaker.tripped:
            settings = self._settings
            raise FatalError(
                f"more than {settings.max_ratio:.0%} of the last {settings.window} records are "
                f"poison (last: {exc.stage} at {where}: {exc}); stopping instead of "
                f"dead-lettering the topic, nothing committed past it"
            ) from exc
        _log.warning("dead-lettering %s (%s): %s", where, exc.stage, exc)
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        return DeadLetter(record, exc.stage, type(cause).__name__, str(exc))

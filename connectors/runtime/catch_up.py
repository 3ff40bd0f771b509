"""`--until-caught-up`: stop once every assigned partition reached its end offset at start.

The end offset of a partition is taken when the partition is first seen assigned, so a
topic that keeps growing does not keep a backfill running forever. Progress (done / total
and rate) is reported about once a second as a line, or to a progress bar (`Shows`, on a
terminal) ten times a second, with the final line after it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from connectors.core.reader import Reader
from connectors.core.records import Batch, TopicPartition


@runtime_checkable
class Shows(Protocol):
    """A report that draws the figures itself (a progress bar) rather than a line each
    second; it still prints lines given to it (the final one)."""

    def __call__(self, line: str) -> None: ...

    def show(self, done: int, total: int, rate: float, partitions: int, finished: bool) -> None:
        """Move the bar: `done` of `total` records, `rate` records/s."""


#: Seconds between updates of a progress bar.
BAR_EVERY_S = 0.1


class CatchUp:
    def __init__(
        self,
        reader: Reader,
        report: Callable[[str], None] | None = None,
        every_s: float = 1.0,
    ) -> None:
        self._reader = reader
        self._report = report
        self._every_s = every_s
        self._targets: dict[TopicPartition, int] = {}
        self._starts: dict[TopicPartition, int] = {}
        self._began: float | None = None
        self._last_report = 0.0

    def note(self, batch: Batch) -> None:
        """Remember where each partition started, before the batch moves its position."""
        if self._began is None and batch.records:
            self._began = time.monotonic()
        for tp, first in batch.first_offsets.items():
            self._starts.setdefault(tp, first)

    async def done(self) -> bool:
        assigned = self._reader.assignment()
        if not assigned:
            return False
        if self._began is None:  # no batch noted yet (a worker's watch notes none)
            self._began = time.monotonic()
        new = assigned - self._targets.keys()
        if new:
            for tp, position in (await self._reader.positions(new)).items():
                self._starts.setdefault(tp, position)
            self._targets.update(await self._reader.end_offsets(new))
        positions = await self._reader.positions(assigned)
        finished = all(positions.get(tp, -1) >= self._targets[tp] for tp in assigned)
        now = time.monotonic()
        report = self._report
        bar = report if isinstance(report, Shows) else None
        every = BAR_EVERY_S if bar is not None else self._every_s
        if report is not None and (finished or now - self._last_report >= every):
            self._last_report = now
            done, total = self._counts(assigned, positions)
            rate = done / max(now - (self._began or now), 1e-9)
            if bar is not None:
                bar.show(done, total, rate, len(assigned), finished)
            if bar is None or finished:
                report(_line(done, total, rate, len(assigned), finished))
        return finished

    def _counts(
        self, assigned: set[TopicPartition], positions: dict[TopicPartition, int]
    ) -> tuple[int, int]:
        total = sum(max(0, self._targets[tp] - self._starts.get(tp, 0)) for tp in assigned)
        done = sum(
            max(0, min(positions.get(tp, 0), self._targets[tp]) - self._starts.get(tp, 0))
            for tp in assigned
        )
        return done, total


def _line(done: int, total: int, rate: float, partitions: int, finished: bool) -> str:
    state = "caught up" if finished else "catching up"
    return (
        f"{state}: {done}/{total} records ({100.0 * done / total if total else 100.0:.0f}%), "
        f"{rate:,.0f} records/s, {partitions} partitions"
    )

"""The replay guard: records a crashed run already uploaded are not uploaded again.

Objects are named by the first and last offset they hold, but after a crash the runner
replays from the committed offset with other batch boundaries than the run that died, which
would give overlapping objects under other names. So whenever a partition's records do not
continue where this writer last left them (first write after a start, a rebalance, a
rewind), the guard lists, for each path the partition's records go to, that path's objects
from the replay offset (`ListObjectsV2 start-after`, one request per path and partition,
made the first time the path is met) and skips every record an existing object's offset
range covers. Objects never straddle a committed offset, because the runner commits exactly
what one write covered, so only objects the crashed run left past that offset are found.

Why a range is enough: an object holds a run of consecutive units of its path's records
within one write, so a record of that path inside the range of an object but not in it was
stored in another object of the same write (or is poison, never routed to a path at all).

Only what the listings found is kept: the objects this run uploads are never handed to it
again (a retry gets only the entries not reported stored; a rewind or rebalance lists
anew), so the memory is one entry per path met since the partition's replay point, plus
the ranges a crashed run left.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from connectors import Batch, TopicPartition
from writers.s3.client import ObjectClient
from writers.s3.template import Route

_log = logging.getLogger("connectors.writers.s3")
ROUTES_KEPT = 100_000
"""Paths remembered per partition. Forgetting one costs a listing when it is met again,
never a duplicate: that listing also finds this run's own objects of the path, which hold
only offsets before the records being written."""


@dataclass
class _Partition:
    """What the guard knows of one partition's objects since it last lost track of it."""

    next_offset: int = -1  # the offset after the last record written
    anchor: int = 0  # where the current run of this partition started (a replay point)
    ranges: dict[Route, list[tuple[int, int]]] = field(default_factory=dict)


class ReplayGuard:
    def __init__(self, client: ObjectClient) -> None:
        self._client = client
        self._partitions: dict[TopicPartition, _Partition] = {}

    def track(self, batch: Batch) -> None:
        """Forget what we knew of a partition whose records do not continue from our last
        write: its paths are listed again from the new starting offset."""
        firsts: dict[TopicPartition, int] = {}
        for record in batch.records:
            tp = (record.topic, record.partition)
            firsts[tp] = min(firsts.get(tp, record.offset), record.offset)
        for tp, first in firsts.items():
            known = self._partitions.get(tp)
            if known is None or known.next_offset != first:
                # expected next: this batch again, when a failed attempt is retried
                self._partitions[tp] = _Partition(next_offset=first, anchor=first)

    def written(self, next_offsets: dict[TopicPartition, int]) -> None:
        for tp, next_offset in next_offsets.items():
            self._partitions.setdefault(tp, _Partition()).next_offset = next_offset

    async def stored(self, tp: TopicPartition, route: Route) -> list[tuple[int, int]]:
        """The offset ranges of this path's objects of `tp` from the replay point on."""
        state = self._partitions.setdefault(tp, _Partition())
        if route not in state.ranges:
            if len(state.ranges) >= ROUTES_KEPT:  # the oldest is listed again if met again
                del state.ranges[next(iter(state.ranges))]
            state.ranges[route] = await self._list(route, state.anchor)
        return state.ranges[route]

    async def _list(self, route: Route, anchor: int) -> list[tuple[int, int]]:
        found = []
        for key in await self._client.keys_after(route.folder, route.start_after(anchor)):
            offsets = route.offsets(key)
            if offsets is not None and offsets[0] >= anchor:
                found.append(offsets)
        if found:
            last = max(last for _, last in found)
            _log.info("%s: objects up to offset %d already exist", route.before, last)
        return found


def covered(offset: int, ranges: list[tuple[int, int]]) -> bool:
    return any(first <= offset <= last for first, last in ranges)

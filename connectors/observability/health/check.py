"""The consumer check behind `/healthz`, remembering each look between probes.

Each run asks the pipeline what it is doing (`activity`) and which partitions it holds,
reads their committed and end offsets from the brokers, and judges each (`judge`). It also
refreshes the offset gauges (committed, end, lag) for exactly the partitions assigned now:
series of partitions that moved to another pod are removed, so they cannot keep an alert
firing here. State changes are logged once, not once per probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from connectors.core.records import TopicPartition
from connectors.kafka.offsets import BrokerOffsets, OffsetsUnavailable
from connectors.observability import metrics
from connectors.observability.health.judge import (
    Blocked,
    Observation,
    PartitionHealth,
    Reason,
    Wedged,
    blocked,
    judge,
    wedged,
)
from connectors.observability.health.status import PipelineStatus

__all__ = ["ConsumerCheck", "ConsumerReport"]

_log = logging.getLogger("connectors.observability.health")


@dataclass(frozen=True, slots=True)
class ConsumerReport:
    partitions: tuple[PartitionHealth, ...]
    error: str | None = None
    wedged: Wedged | None = None
    blocked: Blocked | None = None

    @property
    def healthy(self) -> bool:
        return self.wedged is None and all(p.healthy for p in self.partitions)


class ConsumerCheck:
    """Cloudflare's consumer check over this process's partitions, plus the wedge check.

    `stuck_after_s` is how long a partition may stay behind without a commit;
    `wedged_after_s` how long one stage of the pipeline may run.
    """

    def __init__(
        self,
        status: PipelineStatus,
        offsets: BrokerOffsets,
        stuck_after_s: float,
        wedged_after_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._status = status
        self._offsets = offsets
        self._stuck_after_s = stuck_after_s
        self._wedged_after_s = wedged_after_s
        self._clock = clock
        self._seen: dict[TopicPartition, Observation] = {}
        self._reasons: dict[TopicPartition, Reason] = {}
        self._exported: set[TopicPartition] = set()
        self._wedged_stage: str | None = None
        self._lock = asyncio.Lock()

    def _waiting(self) -> Blocked | None:
        return blocked(self._status.blocked(), self._clock())

    async def run(self) -> ConsumerReport:
        async with self._lock:
            stuck = self._wedge()
            partitions = await self._status.assignment()
            if not partitions:
                self._keep_only(set())
                return ConsumerReport((), wedged=stuck, blocked=self._waiting())
            try:
                committed, ends = await self._offsets.fetch(partitions)
            except OffsetsUnavailable as exc:
                waiting = self._waiting()
                metrics.OFFSET_FETCH_FAILURES.labels(self._status.connector).inc()
                reason: Reason = "offsets_refused" if exc.refused else "offsets_unavailable"
                found = tuple(
                    PartitionHealth(t, p, reason, None, None) for t, p in sorted(partitions)
                )
                report = ConsumerReport(found, str(exc), stuck, waiting)
                self._note_transitions(report)
                return report
            # Read after the offsets: a write that succeeded and committed while they were
            # fetched must not be reported blocked beside the offsets it committed.
            waiting = self._waiting()
            judged = self._judged(partitions, committed, ends, waiting)
            report = ConsumerReport(judged, wedged=stuck, blocked=waiting)
            self._keep_only(partitions)
            self._export(report)
            self._note_transitions(report)
            return report

    def wedge(self) -> Wedged | None:
        """The stage running for too long, if any, without logging: for `/livez`."""
        status = self._status
        return wedged(status.activity(), self._clock(), self._wedged_after_s, status.blocked())

    def _wedge(self) -> Wedged | None:
        """The stage running for too long, if any; logged when it starts and ends."""
        found = self.wedge()
        stage = None if found is None else found.stage
        if found is not None and stage != self._wedged_stage:
            _log.warning(
                "%s has been running for %.1fs (more than HEALTH_STUCK_AFTER_S=%gs)",
                found.stage,
                found.for_s,
                self._wedged_after_s,
                extra={"stage": found.stage, "reason": "wedged"},
            )
        elif found is None and self._wedged_stage is not None:
            _log.info("%s finished; the pipeline is moving again", self._wedged_stage)
        self._wedged_stage = stage
        return found

    def _judged(
        self,
        partitions: set[TopicPartition],
        committed: dict[TopicPartition, int | None],
        ends: dict[TopicPartition, int],
        waiting: Blocked | None,
    ) -> tuple[PartitionHealth, ...]:
        """Each partition's reason; one that would be `stuck` while the pipeline waits on a
        dependency is `blocked`: the same lag, another cause and another remedy."""
        now = self._clock()
        found = []
        for tp in sorted(partitions):
            reason, seen = judge(
                self._seen.get(tp), committed.get(tp), ends.get(tp), now, self._stuck_after_s
            )
            if seen is not None:
                self._seen[tp] = seen
            if reason == "stuck" and waiting is not None:
                reason = "blocked"
            since = seen.behind_since if seen is not None else None
            found.append(
                PartitionHealth(
                    tp[0],
                    tp[1],
                    reason,
                    committed.get(tp),
                    ends.get(tp),
                    None if since is None else now - since,
                )
            )
        return tuple(found)

    def _keep_only(self, partitions: set[TopicPartition]) -> None:
        for tp in set(self._seen) - partitions:
            del self._seen[tp]
        for tp in set(self._reasons) - partitions:
            del self._reasons[tp]
        name = self._status.connector
        for topic, partition in self._exported - partitions:
            for gauge in (metrics.COMMITTED_OFFSET, metrics.END_OFFSET, metrics.CONSUMER_LAG):
                with contextlib.suppress(KeyError):
                    gauge.remove(name, topic, str(partition))
        self._exported &= partitions

    def _export(self, report: ConsumerReport) -> None:
        name = self._status.connector
        for p in report.partitions:
            labels = (name, p.topic, str(p.partition))
            if p.end is not None:
                metrics.END_OFFSET.labels(*labels).set(p.end)
            if p.committed is not None and p.lag is not None:
                metrics.COMMITTED_OFFSET.labels(*labels).set(p.committed)
                metrics.CONSUMER_LAG.labels(*labels).set(p.lag)
            self._exported.add((p.topic, p.partition))

    def _note_transitions(self, report: ConsumerReport) -> None:
        """One log line when a partition changes state, not one per probe."""
        for p in report.partitions:
            tp = (p.topic, p.partition)
            if self._reasons.get(tp) == p.reason:
                continue
            self._reasons[tp] = p.reason
            level = logging.INFO if p.healthy else logging.WARNING
            if p.reason == "offsets_refused":
                level = logging.ERROR
            _log.log(
                level,
                "partition %s[%d] is %s: committed %s, end %s%s",
                p.topic,
                p.partition,
                p.reason,
                p.committed,
                p.end,
                f" ({report.error})" if report.error else _why(report),
                extra={"topic": p.topic, "partition": p.partition, "reason": p.reason},
            )


def _why(report: ConsumerReport) -> str:
    waiting = report.blocked
    if waiting is None:
        return ""
    return f" ({waiting.stage} waiting {waiting.for_s:.0f}s: {waiting.reason})"

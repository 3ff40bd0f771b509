"""The runner's metrics for one connector, with their labels bound once.

`prometheus_client` resolves a label set to its child series on every `.labels(...)` call
(a lock and a dict lookup); the runner records a handful of figures per batch, so the
series it always uses are bound here at start, and those keyed by topic, partition or
stage are bound the first time each one is seen and kept.

Every counter is created at 0 at start for the label values known then (the topics, the
stages, the writer, the transforms): `increase()` and `rate()` see a series' first event only
when the series existed before it. Counters labelled by a reason (retries by reason) appear
with their first event: their reasons cannot be known in advance.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Mapping, Sequence
from operator import countOf, itemgetter
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from connectors.core.errors import RetriableError
from connectors.core.records import Batch, Record, TopicPartition
from connectors.observability import metrics

Exemplar = dict[str, str] | None

#: Every stage the runner retries (`Retrier` calls), each counted from 0.
RETRIED_STAGES = (
    "writer.start",
    "dead_letters.start",
    "reader.start",
    "poll",
    "transform",
    "write",
    "dead_letter",
    "commit",
)


def retry_reason(error: RetriableError) -> str:
    """What a retry is labelled with: the reason the error names (an HTTP status), else
    the class of its cause (the client library's error), else its own class."""
    if error.reason:
        return error.reason
    cause = error.__cause__ or error.__context__
    return type(cause if cause is not None else error).__name__


class Instruments:
    def __init__(
        self,
        connector: str,
        writer: str,
        *,
        topics: Sequence[str] = (),
        transforms: Sequence[str] = (),
    ) -> None:
        self.connector = connector
        stage = metrics.STAGE_SECONDS
        self.poll_seconds: Histogram = stage.labels(connector, "poll")
        self.decode_seconds: Histogram = stage.labels(connector, "decode")
        self.transform_seconds: Histogram = stage.labels(connector, "transform")
        self.write_seconds: Histogram = stage.labels(connector, "write")
        self.commit_seconds: Histogram = stage.labels(connector, "commit")
        self.batch_records: Histogram = metrics.BATCH_SIZE.labels(connector)
        self.entries_written: Counter = metrics.ENTRIES_WRITTEN.labels(connector, writer)
        self.in_flight: Gauge = metrics.WRITER_IN_FLIGHT.labels(connector, writer)
        self.commits: Counter = metrics.COMMITS.labels(connector)
        self.paused: Gauge = metrics.PAUSED_PARTITIONS.labels(connector)
        self._records_in: dict[str, Counter] = {}
        self._age: dict[str, Histogram] = {}
        self._last_commit: dict[TopicPartition, Gauge] = {}
        self._failed: dict[str, Counter] = {}
        self._dead_lettered: dict[tuple[str, str], Counter] = {}
        self._retries: dict[str, Counter] = {}
        self._reasons: dict[tuple[str, str], Counter] = {}
        self._steps: dict[str, Histogram] = {}
        self.records_committed = 0
        self.last_committed: dict[TopicPartition, int] = {}
        self._at_zero(topics, [f"transform:{name}" for name in transforms])

    def _at_zero(self, topics: Sequence[str], transform_stages: list[str]) -> None:
        """Create the counters' series known at start, at 0."""
        connector = self.connector
        poisoned = ["decode", *transform_stages, "write"]
        for stage in poisoned:
            self._failed[stage] = metrics.RECORDS_FAILED.labels(connector, stage)
        for stage in RETRIED_STAGES:
            self._retries[stage] = metrics.RETRIES.labels(connector, stage)
        for topic in topics:
            self._records_in[topic] = metrics.RECORDS_IN.labels(connector, topic)
            metrics.OFFSET_RESETS.labels(connector, topic)
            for stage in poisoned:
                counter = metrics.RECORDS_DEAD_LETTERED.labels(connector, topic, stage)
                self._dead_lettered[(topic, stage)] = counter
        for kind in metrics.REBALANCE_KINDS:
            metrics.REBALANCES.labels(connector, kind)
        metrics.OFFSET_FETCH_FAILURES.labels(connector)

    def read(self, batch: Batch) -> None:
        """A batch arrived: its size, and its records per topic."""
        self.batch_records.observe(len(batch))
        for topic, count in _per_topic(batch.records).items():
            counter = self._records_in.get(topic)
            if counter is None:
                counter = self._records_in[topic] = metrics.RECORDS_IN.labels(self.connector, topic)
            counter.inc(count)

    def transformed(
        self, decode_s: float, transform_s: float, steps: Mapping[str, float], exemplar: Exemplar
    ) -> None:
        self.decode_seconds.observe(decode_s, exemplar)
        self.transform_seconds.observe(transform_s, exemplar)
        for step, seconds in steps.items():
            histogram = self._steps.get(step)
            if histogram is None:
                histogram = metrics.STAGE_SECONDS.labels(self.connector, f"transform:{step}")
                self._steps[step] = histogram
            histogram.observe(seconds, exemplar)

    def aged(self, batch: Batch) -> None:
        """How late the batch was written: the age of each partition's first record (records
        of a partition come together; one observation per record would cost more than every
        other metric of the batch)."""
        now_ms = time.time() * 1000.0
        for record in batch.heads:
            if record.timestamp_ms > 0:
                topic = record.topic
                histogram = self._age.get(topic)
                if histogram is None:
                    histogram = self._age[topic] = metrics.RECORD_AGE.labels(self.connector, topic)
                histogram.observe(max(0.0, (now_ms - record.timestamp_ms) / 1000.0))

    def committed(self, offsets: Mapping[TopicPartition, int], records: int = 0) -> None:
        self.commits.inc()
        self.records_committed += records
        self.last_committed.update(offsets)
        now = time.time()
        for tp in offsets:
            gauge = self._last_commit.get(tp)
            if gauge is None:
                gauge = self._last_commit[tp] = metrics.LAST_COMMIT_TIME.labels(
                    self.connector, tp[0], str(tp[1])
                )
            gauge.set(now)

    def failed(self, stage: str) -> None:
        counter = self._failed.get(stage)
        if counter is None:
            counter = self._failed[stage] = metrics.RECORDS_FAILED.labels(self.connector, stage)
        counter.inc()

    def dead_lettered(self, topic: str, stage: str) -> None:
        counter = self._dead_lettered.get((topic, stage))
        if counter is None:
            counter = metrics.RECORDS_DEAD_LETTERED.labels(self.connector, topic, stage)
            self._dead_lettered[(topic, stage)] = counter
        counter.inc()

    def retried(self, stage: str, error: RetriableError | None = None) -> None:
        counter = self._retries.get(stage)
        if counter is None:
            counter = self._retries[stage] = metrics.RETRIES.labels(self.connector, stage)
        counter.inc()
        if error is None:
            return
        key = (stage, retry_reason(error))
        by_reason = self._reasons.get(key)
        if by_reason is None:
            by_reason = metrics.RETRIES_BY_REASON.labels(self.connector, *key)
            self._reasons[key] = by_reason
        by_reason.inc()


_topic_of: Any = itemgetter(0)  # a Record's topic, in C


def _per_topic(records: Sequence[Record]) -> dict[str, int]:
    """How many of `records` each topic has. Counted in C: a batch of one topic (the usual
    one) takes one comparison per record, any other a `Counter`."""
    if not records:
        return {}
    first = records[0][0]
    same = countOf(map(_topic_of, records), first)
    if same == len(records):
        return {first: same}
    return dict(Tally(map(_topic_of, records)))

"""Every metric the runtime exports, declared once.

Labels stay bounded: connector, topic, partition, stage, writer, reason; never a key or an
offset. Stage timings are per batch, so a slow stage shows in its histogram whatever the
batch size. The alert rules (`connectors.observability.alerts`) and the dashboard name series
through these objects, so renaming one here renames it there.

Who sets what: the runner sets the per-batch figures as it goes; the health sampler
(`connectors.observability.health`) sets the offset gauges from what the broker reports, on its own
thread, so a wedged pipeline still shows a growing lag and an unmoving committed offset.
"""

from __future__ import annotations

import platform
from importlib import metadata

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
)

# A `_created` series beside every counter and histogram doubles what is scraped and stored
# for a figure no rule or dashboard reads.
disable_created_metrics()  # type: ignore[no-untyped-call]

REGISTRY = CollectorRegistry(auto_describe=True)

_STAGE_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
_SIZE_BUCKETS = (1, 5, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 20000, 50000, 100000)
# From "just produced" to "a day late": an age histogram is read against an SLA in minutes.
_AGE_BUCKETS = (
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    86400.0,
)

BUILD = Info(
    "connector_build",
    "Versions of the connector runtime (version), Python (python) and aiokafka (aiokafka).",
    registry=REGISTRY,
)

STAGE_SECONDS = Histogram(
    "connector_stage_seconds",
    "Time one batch spent in a stage (poll, decode, transform, write, commit).",
    ["connector", "stage"],
    buckets=_STAGE_BUCKETS,
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "connector_batch_records",
    "Records per batch read from Kafka.",
    ["connector"],
    buckets=_SIZE_BUCKETS,
    registry=REGISTRY,
)
RECORDS_IN = Counter(
    "connector_records_in",
    "Records read from Kafka.",
    ["connector", "topic"],
    registry=REGISTRY,
)
ENTRIES_WRITTEN = Counter(
    "connector_entries_written",
    "Entries the writer stored (upserts and deletes).",
    ["connector", "writer"],
    registry=REGISTRY,
)
RECORDS_FAILED = Counter(
    "connector_records_failed",
    "Records that could not be processed, by stage.",
    ["connector", "stage"],
    registry=REGISTRY,
)
RETRIES = Counter(
    "connector_retries",
    "Retries of a batch after a retriable failure, by stage.",
    ["connector", "stage"],
    registry=REGISTRY,
)
RETRIES_BY_REASON = Counter(
    "connector_retries_by_reason",
    "Retries of a batch after a retriable failure, by stage and reason: the HTTP status "
    "(http_503) or the class of the error (KafkaConnectionError, ConnectTimeout).",
    ["connector", "stage", "reason"],
    registry=REGISTRY,
)
COMMITS = Counter(
    "connector_commits",
    "Offset commits after successful writes.",
    ["connector"],
    registry=REGISTRY,
)
COMMITTED_OFFSET = Gauge(
    "connector_committed_offset",
    "The group's committed offset per assigned partition (next offset to read), as the "
    "broker reports it.",
    ["connector", "topic", "partition"],
    registry=REGISTRY,
)
LAST_COMMIT_TIME = Gauge(
    "connector_last_commit_timestamp_seconds",
    "Unix time of the last commit per partition.",
    ["connector", "topic", "partition"],
    registry=REGISTRY,
)

RECORDS_DEAD_LETTERED = Counter(
    "connector_records_dead_lettered",
    "Records sent to the dead-letter topic, by topic and reason: the stage that rejected "
    "them (decode, transform:<name>, write).",
    ["connector", "topic", "reason"],
    registry=REGISTRY,
)
RECORD_AGE = Histogram(
    "connector_record_age_seconds",
    "Age when its batch was written of each partition's first record in the batch: now "
    "minus its Kafka timestamp.",
    ["connector", "topic"],
    buckets=_AGE_BUCKETS,
    registry=REGISTRY,
)
END_OFFSET = Gauge(
    "connector_end_offset",
    "End offset (next offset to be produced) per assigned partition.",
    ["connector", "topic", "partition"],
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "connector_consumer_lag",
    "Records behind per assigned partition: end offset minus committed offset.",
    ["connector", "topic", "partition"],
    registry=REGISTRY,
)
OFFSET_FETCH_FAILURES = Counter(
    "connector_offset_fetch_failures",
    "Times the health sampler could not read committed or end offsets from the broker.",
    ["connector"],
    registry=REGISTRY,
)
PAUSED_PARTITIONS = Gauge(
    "connector_paused_partitions",
    "Partitions paused while a failed write or dead-letter send is retried.",
    ["connector"],
    registry=REGISTRY,
)
WRITER_IN_FLIGHT = Gauge(
    "connector_writer_in_flight_entries",
    "Entries handed to the writer and not yet acknowledged.",
    ["connector", "writer"],
    registry=REGISTRY,
)
OFFSET_RESETS = Counter(
    "connector_offset_resets",
    "Times a partition's position was no longer in the log (records deleted by retention "
    "or kafka-delete-records) and was reset by KAFKA_AUTO_OFFSET_RESET: records skipped.",
    ["connector", "topic"],
    registry=REGISTRY,
)
RECORDS_DROPPED = Counter(
    "connector_records_dropped",
    "Records a transform dropped (returned None or nothing for), by transform.",
    ["connector", "transform"],
    registry=REGISTRY,
)
TRANSFORM_DROPPED = Counter(
    "connector_transform_dropped_records",
    "Records a transform dropped, by transform: the same count as "
    "connector_records_dropped_total, kept for the dashboards that read this name.",
    ["connector", "transform"],
    registry=REGISTRY,
)
REBALANCES = Counter(
    "connector_rebalances",
    "Group rebalances that changed this member's partitions, by kind: assigned (it got "
    "partitions), revoked (it gave them up), lost (taken after it fell out of the group).",
    ["connector", "kind"],
    registry=REGISTRY,
)
REBALANCE_KINDS = ("assigned", "revoked", "lost")
TRANSFORM_RETRIES = Counter(
    "connector_transform_retries",
    "Retries of a batch's transform stage, by the transform that asked and why (http_503, "
    "timeout, connection, retriable: it raised RetriableError itself).",
    ["connector", "transform", "reason"],
    registry=REGISTRY,
)
TRANSFORM_CACHE_HITS = Counter(
    "connector_transform_cache_hits",
    "ctx.cache lookups answered from the cache or by a load already running.",
    ["connector"],
    registry=REGISTRY,
)
TRANSFORM_CACHE_MISSES = Counter(
    "connector_transform_cache_misses",
    "ctx.cache lookups that started a load.",
    ["connector"],
    registry=REGISTRY,
)
TRANSFORM_IN_FLIGHT = Gauge(
    "connector_transform_in_flight_calls",
    "Calls of async (and async batch) transforms awaited now, by transform.",
    ["connector", "transform"],
    registry=REGISTRY,
)


def build_info(connector: str, package: str = "connectors") -> dict[str, str]:
    """The labels of `connector_build_info`: the package and connector, and the versions
    an incident report asks for first."""
    return {
        "package": package,
        "connector": connector,
        "version": _version("kafka-connectors"),
        "python": platform.python_version(),
        "aiokafka": _version("aiokafka"),
    }


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"

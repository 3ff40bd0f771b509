"""Every metric the runtime exports, declared once.

Labels stay bounded: connector, topic, partition, stage, writer, reason; never a key or an
offset. Stage timings are per batch, so a slow stage shows in its histogram whatever the
batch size.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

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
_SIZE_BUCKETS = (1, 5, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000)

BUILD = Info("connector_build", "Version of the connector runtime.", registry=REGISTRY)

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
COMMITS = Counter(
    "connector_commits",
    "Offset commits after successful writes.",
    ["connector"],
    registry=REGISTRY,
)
COMMITTED_OFFSET = Gauge(
    "connector_committed_offset",
    "Last offset committed per partition (next offset to read).",
    ["connector", "topic", "partition"],
    registry=REGISTRY,
)
LAST_COMMIT_TIME = Gauge(
    "connector_last_commit_timestamp_seconds",
    "Unix time of the last commit per partition.",
    ["connector", "topic", "partition"],
    registry=REGISTRY,
)

"""The producer library's metrics, in the runtime's registry (served on `/metrics` by a
connector, or by the service through `connectors.metrics.REGISTRY`)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from connectors.observability.metrics import REGISTRY

RECORDS_SENT = Counter(
    "connector_producer_records_sent",
    "Records the producer library sent and the brokers acknowledged.",
    ["topic"],
    registry=REGISTRY,
)
ERRORS = Counter(
    "connector_producer_errors",
    "Records the producer library could not send (type refused, broker refusal, timeout).",
    ["topic", "reason"],
    registry=REGISTRY,
)
SEND_SECONDS = Histogram(
    "connector_producer_send_seconds",
    "Time from send() to the brokers' acknowledgement of one record.",
    ["topic"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)

"""The HTTP writer's own series, beside the runtime's (`connectors.metrics.REGISTRY`).

Labels stay bounded: the connector, the method and the status code (or `timeout`,
`error` when no answer came); never a URL, which may carry a key per record.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from connectors import metrics

REQUEST_SECONDS = Histogram(
    "connector_http_request_seconds",
    "Time from sending an HTTP writer request to its answer (or failure).",
    ["connector", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=metrics.REGISTRY,
)
REQUESTS = Counter(
    "connector_http_requests",
    "HTTP writer requests by answer: the status code, or timeout/error when none came.",
    ["connector", "method", "code"],
    registry=metrics.REGISTRY,
)

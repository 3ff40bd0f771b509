"""OpenTelemetry traces: one span per batch and stage, linked to each record's own trace.

Off unless `OTEL_TRACES_EXPORTER` (otlp, console) or an OTLP endpoint is set. When off,
nothing of OpenTelemetry is imported and every hook returns one shared object whose
methods do nothing (`noop`), so a batch costs the runner a few attribute lookups.

When on, for each batch (`spans`)::

    "<connector> poll"        the wait for records (only polls that returned some)
    "<connector> batch"       links to each record's sampled upstream context; parent of:
      "<connector> decode"    (decode and transform are timed per record and summed:
      "<connector> transform"  their spans hold the summed time, laid end to end)
      "<connector> write", "<connector> dead_letter", "<connector> commit"
    "process <topic>"         one per record whose upstream context is sampled: a child of
                              the producer's span, linked to the batch; its context is what
                              the connector sends on (Kafka records, dead letters, HTTP)

So one trace follows a message from its producer through the connector to what reads the
writer's output, while the per-stage timings stay one span per batch. A record whose
upstream trace is not sampled keeps its `traceparent` as it came (no span is made for it),
and one that came without a context is sent on in the batch's trace: per-record spans cost
only what the producers' sampling asks for.

Written here rather than taken from opentelemetry-instrumentation-aiokafka: that package
starts a span per record on every fetch (a new root for each record without context) and,
on every send, injects whatever context is current, which on the Kafka writer would add a
second `traceparent` next to the one each record carries from its source; it also patches
aiokafka classes for the whole process, the health checks' clients included. From
OpenTelemetry we use the API, the SDK, the W3C propagator (`propagation`) and the
OTLP/HTTP exporter (`setup`).
"""

from connectors.config.observability import TracingSettings
from connectors.observability.tracing.hooks import (
    batch,
    current_ids,
    http_headers,
    install,
    poll,
    shutdown,
)
from connectors.observability.tracing.noop import BatchTrace
from connectors.observability.tracing.setup import configure

__all__ = [
    "BatchTrace",
    "TracingSettings",
    "batch",
    "configure",
    "current_ids",
    "http_headers",
    "install",
    "poll",
    "shutdown",
]

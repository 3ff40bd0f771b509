"""The hooks the runner, the writers and the log formatter call, over one module state.

`_state` is None while tracing is off: every hook then returns at once (`batch` hands back
the shared no-op `OFF`), and nothing of OpenTelemetry is imported.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from connectors.core.records import TRACE_HEADERS, Batch, Entry
from connectors.observability.tracing.noop import OFF, BatchTrace
from connectors.observability.tracing.propagation import Tracing
from connectors.observability.tracing.spans import LiveBatch

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

__all__ = ["batch", "current_ids", "http_headers", "install", "poll", "shutdown"]

_state: Tracing | None = None


def batch(connector: str, records: Batch) -> BatchTrace:
    """The spans of one batch, to use as `with tracing.batch(name, batch) as trace:`."""
    if _state is None:
        return OFF
    return LiveBatch(_state, connector, records)


def poll(connector: str, records: Batch, seconds: float) -> None:
    """A span for a poll that just returned `records` after `seconds`; none when empty."""
    if _state is None or not records.records:
        return
    from opentelemetry import trace

    end = time.time_ns()
    span = _state.tracer.start_span(
        f"{connector} poll",
        kind=trace.SpanKind.CONSUMER,
        start_time=end - int(seconds * 1e9),
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "receive",
            "messaging.batch.message_count": len(records),
            "connector.name": connector,
        },
    )
    span.end(end_time=end)


def http_headers(entries: Sequence[Entry]) -> dict[str, str]:
    """Trace headers for one HTTP request carrying `entries`.

    One entry: the context it carries (set by `BatchTrace.carry`, or forwarded as it came
    when tracing is off). Several: the current span's (the write stage), which links to
    every record of the batch. Empty when there is nothing to carry.
    """
    if len(entries) == 1:
        return {
            k.lower(): v.decode("latin-1")
            for k, v in entries[0].headers
            if k.lower() in TRACE_HEADERS
        }
    if _state is None:
        return {}
    from opentelemetry import context

    return {k: v.decode("latin-1") for k, v in _state.inject(context.get_current())}


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) of the current span, for log lines; None when off or outside one."""
    if _state is None:
        return None
    from opentelemetry import trace

    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return format(span_context.trace_id, "032x"), format(span_context.span_id, "016x")


def install(provider: TracerProvider) -> None:
    """Trace through `provider` from now on (tests, or a process that built its own)."""
    global _state
    _state = Tracing(provider)


def shutdown() -> None:
    """Export what is buffered and stop tracing; call once when the connector exits."""
    global _state
    state, _state = _state, None
    if state is not None:
        state.provider.shutdown()

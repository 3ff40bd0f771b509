"""OpenTelemetry traces: one span per batch and stage, linked to each record's own trace.

Off unless `OTEL_TRACES_EXPORTER` (otlp, console) or an OTLP endpoint is set. When off,
nothing of OpenTelemetry is imported and every hook returns one shared object whose
methods do nothing, so a batch costs the runner a few attribute lookups.

When on, for each batch::

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
OpenTelemetry we use the API, the SDK, the W3C propagator and the OTLP/HTTP exporter.

Like the OpenTelemetry SDK everywhere, the exporter, span limits and resource detectors
also read their own `OTEL_*` variables from the process environment.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from connectors.config.observability import TracingSettings
from connectors.core.records import TRACE_HEADERS, Batch, Entry, Headers, Record, WriteBatch

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Link, Span, Tracer

__all__ = [
    "BatchTrace",
    "TracingSettings",
    "batch",
    "configure",
    "current_ids",
    "enabled",
    "http_headers",
    "install",
    "poll",
    "shutdown",
]


# -- the no-op surface the runner always talks to -------------------------------------------


class _Nothing:
    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NOTHING = _Nothing()


class BatchTrace:
    """The spans of one batch. This base class is what the runner gets when tracing is off:
    every method returns at once and hands its input back unchanged."""

    __slots__ = ()
    active = False

    def __enter__(self) -> BatchTrace:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def stage(self, name: str) -> Any:
        """A context manager timing stage `name` as a child span of the batch."""
        return _NOTHING

    def summed(self, *stages: tuple[str, float]) -> None:
        """Spans for stages timed per record and summed, e.g. ("decode", 0.004)."""

    def carry(self, batch: WriteBatch) -> WriteBatch:
        """`batch` with each entry's headers carrying its source record's trace context.

        An entry without headers of its own gets its record's, as the Kafka writer would
        send them, with the trace headers replaced.
        """
        return batch

    def carry_record(self, record: Record) -> Record:
        """`record` with its headers carrying its trace context (for dead letters)."""
        return record

    def exemplar(self) -> dict[str, str] | None:
        """{"trace_id": ...} for a histogram observation, when this batch is sampled."""
        return None


_OFF = BatchTrace()


# -- the live implementation, built only when tracing is on ---------------------------------


class _Tracing:
    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry import propagate
        from opentelemetry.propagators.textmap import Getter, Setter

        class HeaderGetter(Getter[Headers]):
            def get(self, carrier: Headers, key: str) -> list[str] | None:
                found = [v.decode("latin-1") for k, v in carrier if k.lower() == key]
                return found or None

            def keys(self, carrier: Headers) -> list[str]:
                return [k for k, _ in carrier]

        class HeaderSetter(Setter[list[tuple[str, bytes]]]):
            def set(self, carrier: list[tuple[str, bytes]], key: str, value: str) -> None:
                carrier.append((key, value.encode("latin-1")))

        self.provider = provider
        self.tracer: Tracer = provider.get_tracer("connectors")
        self.propagator = propagate.get_global_textmap()
        self.fields = frozenset(self.propagator.fields)
        self.getter = HeaderGetter()
        self.setter = HeaderSetter()

    def extract(self, headers: Headers) -> Context | None:
        """The sampled upstream context in `headers`; None when there is none, or when the
        producer did not sample it (a W3C `traceparent` with the sampled flag off is
        recognised by its last two characters, without parsing the rest)."""
        found = False
        for key, value in headers:
            name = key.lower()
            if name == "traceparent" and len(value) == 55 and value[:3] == b"00-":
                if not int(value[53:55], 16) & 1:
                    return None
                found = True
            elif name in self.fields:
                found = True
        if not found:
            return None
        from opentelemetry import trace

        context = self.propagator.extract(headers, getter=self.getter)
        span_context = trace.get_current_span(context).get_span_context()
        return context if span_context.is_valid and span_context.trace_flags.sampled else None

    def links(self, records: Sequence[Record]) -> tuple[dict[int, Context], list[Link]]:
        """The sampled upstream contexts of `records` (by record id), and links to them."""
        from opentelemetry import trace

        upstream: dict[int, Context] = {}
        links: list[Link] = []
        for record in records:
            if not record.headers:
                continue
            context = self.extract(record.headers)
            if context is not None:
                upstream[id(record)] = context
                links.append(trace.Link(trace.get_current_span(context).get_span_context()))
        return upstream, links

    def inject(self, context: Context) -> list[tuple[str, bytes]]:
        carrier: list[tuple[str, bytes]] = []
        self.propagator.inject(carrier, context=context, setter=self.setter)
        return carrier


class _LiveBatch(BatchTrace):
    __slots__ = (
        "_batch_headers",
        "_connector",
        "_made",
        "_record_spans",
        "_span",
        "_start_ns",
        "_t",
        "_token",
        "_upstream",
    )
    active = True

    def __init__(self, t: _Tracing, connector: str, batch: Batch) -> None:
        from opentelemetry import trace

        self._t = t
        self._connector = connector
        self._start_ns = time.time_ns()
        upstream, links = t.links(batch.records)
        self._span: Span = t.tracer.start_span(
            f"{connector} batch",
            kind=trace.SpanKind.CONSUMER,
            links=links,
            start_time=self._start_ns,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.batch.message_count": len(batch),
                "connector.name": connector,
            },
        )
        self._upstream = upstream
        self._made: dict[int, tuple[tuple[str, bytes], ...]] = {}
        self._batch_headers: tuple[tuple[str, bytes], ...] | None = None
        self._record_spans: list[Span] = []
        self._token: object = None

    def _context(self) -> Context:
        from opentelemetry import trace

        return trace.set_span_in_context(self._span)

    def __enter__(self) -> BatchTrace:
        from opentelemetry import context

        self._token = context.attach(self._context())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        from opentelemetry import context, trace

        if exc is not None:
            self._span.record_exception(exc)
            self._span.set_status(trace.Status(trace.StatusCode.ERROR, str(exc)[:200]))
        for span in self._record_spans:
            if exc is not None:
                span.set_status(trace.Status(trace.StatusCode.ERROR, "batch failed"))
            span.end()
        if self._token is not None:
            context.detach(self._token)  # type: ignore[arg-type]
        self._span.end()

    def stage(self, name: str) -> Any:
        return self._t.tracer.start_as_current_span(
            f"{self._connector} {name}", context=self._context()
        )

    def summed(self, *stages: tuple[str, float]) -> None:
        end = time.time_ns()
        start = end - int(sum(seconds for _, seconds in stages) * 1e9)
        for name, seconds in stages:
            span = self._t.tracer.start_span(
                f"{self._connector} {name}",
                context=self._context(),
                start_time=start,
                attributes={"connector.timing": "summed over the batch's records"},
            )
            start += int(seconds * 1e9)
            span.end(end_time=min(start, end))

    def _headers_for(self, record: Record) -> tuple[tuple[str, bytes], ...]:
        """The trace headers to send on for `record`, made once per record: its `process`
        span's context when its upstream trace is sampled, its own headers as they came when
        not, and the batch's context when it came without one."""
        upstream = self._upstream.get(id(record))
        if upstream is None:
            own = tuple((k, v) for k, v in record.headers if k.lower() in self._t.fields)
            if own:  # an unsampled upstream trace goes on as it came
                return own
            if self._batch_headers is None:
                self._batch_headers = tuple(self._t.inject(self._context()))
            return self._batch_headers
        made = self._made.get(id(record))
        if made is None:
            from opentelemetry import trace

            span = self._t.tracer.start_span(
                f"process {record.topic}",
                context=upstream,
                kind=trace.SpanKind.CONSUMER,
                links=[trace.Link(self._span.get_span_context())],
                start_time=self._start_ns,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.operation.type": "process",
                    "messaging.destination.name": record.topic,
                    "messaging.destination.partition.id": str(record.partition),
                    "messaging.kafka.offset": record.offset,
                    "connector.name": self._connector,
                },
            )
            self._record_spans.append(span)
            made = tuple(self._t.inject(trace.set_span_in_context(span)))
            self._made[id(record)] = made
        return made

    def _with_trace(self, headers: Headers, record: Record) -> Headers:
        trace_headers = self._headers_for(record)
        if not headers:
            return trace_headers
        kept = tuple((k, v) for k, v in headers if k.lower() not in self._t.fields)
        return kept + trace_headers

    def carry(self, batch: WriteBatch) -> WriteBatch:
        entries = tuple(
            Entry(
                e.source,
                e.key,
                e.value,
                e.message,
                self._with_trace(e.headers or e.source.headers, e.source),
            )
            for e in batch.entries
        )
        return WriteBatch(batch.batch, entries)

    def carry_record(self, record: Record) -> Record:
        r = record
        headers = self._with_trace(r.headers, r)
        return Record(r.topic, r.partition, r.offset, r.key, r.value, headers, r.timestamp_ms)

    def exemplar(self) -> dict[str, str] | None:
        context = self._span.get_span_context()
        if not context.trace_flags.sampled:
            return None
        return {"trace_id": format(context.trace_id, "032x")}


# -- module state and the hooks the runner calls --------------------------------------------

_state: _Tracing | None = None


def enabled() -> bool:
    return _state is not None


def batch(connector: str, records: Batch) -> BatchTrace:
    """The spans of one batch, to use as `with tracing.batch(name, batch) as trace:`."""
    if _state is None:
        return _OFF
    return _LiveBatch(_state, connector, records)


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
    _state = _Tracing(provider)


def configure(settings: TracingSettings, connector: str) -> bool:
    """Build and install a provider from the `OTEL_*` settings; False when tracing is off."""
    exporters = settings.exporters
    if not exporters:
        return False
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    resource = Resource.create(
        {"service.name": settings.service_name or connector, "connector.name": connector}
    )
    provider = TracerProvider(sampler=_sampler(settings), resource=resource)
    for name in exporters:
        exporter: SpanExporter
        if name == "console":
            exporter = ConsoleSpanExporter(out=sys.stderr)
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=settings.traces_endpoint)
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # transforms and client libraries share it
    install(provider)
    return True


def shutdown() -> None:
    """Export what is buffered and stop tracing; call once when the connector exits."""
    global _state
    state, _state = _state, None
    if state is not None:
        state.provider.shutdown()


def _sampler(settings: TracingSettings) -> Any:
    from opentelemetry.sdk.trace import sampling

    ratio = sampling.TraceIdRatioBased(settings.traces_sampler_arg)
    return {
        "always_on": sampling.ALWAYS_ON,
        "always_off": sampling.ALWAYS_OFF,
        "traceidratio": ratio,
        "parentbased_always_on": sampling.ParentBased(sampling.ALWAYS_ON),
        "parentbased_always_off": sampling.ParentBased(sampling.ALWAYS_OFF),
        "parentbased_traceidratio": sampling.ParentBased(ratio),
    }[settings.traces_sampler]

"""The spans of one batch when tracing is on (see the package's docstring for the shape).

Per-stage timings stay one span per batch; a `process <topic>` span is made only for a
record whose upstream context is sampled, and its context is what the connector sends on.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

from connectors.core.records import Batch, Entry, Headers, Record, WriteBatch
from connectors.observability.tracing.noop import BatchTrace
from connectors.observability.tracing.propagation import Tracing

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span

__all__ = ["LiveBatch"]


class LiveBatch(BatchTrace):
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

    def __init__(self, t: Tracing, connector: str, batch: Batch) -> None:
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

"""Trace context in and out of Kafka headers, through the globally configured propagator.

Built only when tracing is on: OpenTelemetry is imported here at construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from connectors.core.records import Headers, Record

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Link, Tracer

__all__ = ["Tracing"]


class Tracing:
    """The live tracer and the propagator, as one object the hooks share."""

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

"""A tracer provider built from the standard `OTEL_*` variables, and installed.

Like the OpenTelemetry SDK everywhere, the exporter, span limits and resource detectors
also read their own `OTEL_*` variables from the process environment.
"""

from __future__ import annotations

import sys
from typing import Any

from connectors.config.observability import TracingSettings
from connectors.observability.tracing.hooks import install

__all__ = ["configure"]


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

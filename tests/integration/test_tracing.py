"""A message produced to Kafka with a W3C trace context keeps its trace through the
connector: the HTTP request the writer makes for it carries the same trace id, and the
connector's spans (exported in memory here) link the batch to it."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client.openmetrics.exposition import generate_latest

from connectors import Problem, WriteBatch
from connectors.config.observability import TracingSettings
from connectors.config.settings import load
from connectors.observability import metrics, tracing
from harness.kafka import KafkaBroker, create_topic, run_sync
from tests.conftest import ROOT
from tests.integration.test_health import RunningConnector, pipeline_env
from tests.waiting import wait_for


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.shutdown()


class Receiver:
    """A loopback HTTP server keeping the headers and body of every POST."""

    def __init__(self) -> None:
        received: list[tuple[dict[str, str], bytes]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return None

        self.received = received
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/in"

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _post(url: str, body: bytes, headers: dict[str, str]) -> None:
    assert url.startswith("http://127.0.0.1:")
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        assert response.status == 204


class ForwardingWriter:
    """Posts each entry on, with the trace headers `tracing.http_headers` gives for it,
    the way an HTTP writer sends one request per record."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def start(self) -> None:
        return None

    async def write(self, batch: WriteBatch) -> None:
        for entry in batch.entries:
            headers = tracing.http_headers([entry])
            await asyncio.to_thread(_post, self.url, entry.value or b"", headers)

    async def check(self) -> None:
        return None

    async def close(self) -> None:
        return None


async def _produce(bootstrap: str, topic: str, sampled: str, unsampled: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for value, traceparent in ((b"traced", sampled), (b"unsampled", unsampled)):
            await producer.send_and_wait(
                topic,
                value,
                key=value,
                partition=0,
                headers=[("traceparent", traceparent.encode())],
            )
        await producer.send_and_wait(topic, b"plain", key=b"plain", partition=0)
    finally:
        await producer.stop()


def linked(span: ReadableSpan) -> set[tuple[str, str]]:
    """(trace id, span id) of every span `span` links to."""
    return {
        (format(k.context.trace_id, "032x"), format(k.context.span_id, "016x")) for k in span.links
    }


def span_hex(span: ReadableSpan) -> str:
    assert span.context is not None
    return format(span.context.span_id, "016x")


def _named(found: list[ReadableSpan], name: str) -> ReadableSpan:
    matching = [s for s in found if s.name == name]
    assert len(matching) == 1, [s.name for s in found]
    return matching[0]


def test_a_produced_trace_context_reaches_the_http_request_and_links_the_batch(
    kafka: KafkaBroker, unique: str, tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    topic, name = f"traced-{unique}", f"traced-{unique}"
    create_topic(kafka.bootstrap, topic, partitions=1)
    trace_id, producer_span = secrets.token_hex(16), secrets.token_hex(8)
    unsampled = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-00"
    run_sync(
        lambda: _produce(kafka.bootstrap, topic, f"00-{trace_id}-{producer_span}-01", unsampled),
        30,
    )

    env = pipeline_env(kafka, name, topic, tmp_path, BATCH_MAX_WAIT_MS="300")
    with Receiver() as receiver:
        with RunningConnector(env, ForwardingWriter(receiver.url), serve=False):
            wait_for(lambda: len(receiver.received) == 3, timeout=60, what="three HTTP requests")
        requests = {body: headers for headers, body in receiver.received}

    exported = list(spans.get_finished_spans())
    process = _named(exported, f"process {topic}")
    batch = _named(exported, f"{name} batch")
    poll = _named(exported, f"{name} poll")

    # The traced record's request continues the producer's trace through our process span.
    version, sent_trace, sent_parent, flags = requests[b"traced"]["traceparent"].split("-")
    assert (version, sent_trace, flags) == ("00", trace_id, "01")
    assert process.context is not None and process.parent is not None
    assert format(process.context.trace_id, "032x") == trace_id
    assert format(process.parent.span_id, "016x") == producer_span
    assert process.parent.is_remote and process.kind == SpanKind.CONSUMER
    assert sent_parent == format(process.context.span_id, "016x")
    assert process.attributes is not None and process.attributes["messaging.kafka.offset"] == 0

    # The batch (one trace of its own) links to the upstream context; the poll is timed.
    assert batch.context is not None
    assert linked(batch) == {(trace_id, producer_span)}  # not the unsampled one
    assert poll.attributes is not None and poll.attributes["messaging.batch.message_count"] == 3
    assert linked(process) == {(format(batch.context.trace_id, "032x"), span_hex(batch))}

    # One span per stage, children of the batch.
    children = {
        s.name.removeprefix(f"{name} ")
        for s in exported
        if s.parent is not None and s.parent.span_id == batch.context.span_id
    }
    assert {"decode", "transform", "write", "commit"} <= children

    # A record whose producer did not sample its trace gets no span: its context goes on as is.
    assert requests[b"unsampled"]["traceparent"] == unsampled

    # A record without context is sent on in the batch's trace.
    plain_trace = requests[b"plain"]["traceparent"].split("-")[1]
    assert plain_trace == format(batch.context.trace_id, "032x") != trace_id

    # The stage histograms carry the batch's trace id as an exemplar.
    exposition = generate_latest(metrics.REGISTRY).decode()
    write_buckets = [
        line
        for line in exposition.splitlines()
        if line.startswith("connector_stage_seconds_bucket")
        and f'connector="{name}"' in line
        and 'stage="write"' in line
        and "# {" in line
    ]
    assert write_buckets and all(
        f'trace_id="{format(batch.context.trace_id, "032x")}"' in line for line in write_buckets
    )


def test_tracing_off_imports_no_opentelemetry_and_passes_everything_through() -> None:
    """Off by default at no cost: the hooks are one shared no-op object."""
    script = """
import sys
from connectors.runtime import runner
from connectors.observability import tracing
from connectors.core.records import Batch, Record, WriteBatch
from connectors.observability.tracing import TracingSettings
assert not tracing.configure(TracingSettings.model_validate({}), "c")
batch = Batch([Record("t", 0, 0, b"k", b"v", (("traceparent", b"00-ab-cd-01"),))])
with tracing.batch("c", batch) as trace:
    with trace.stage("write"):
        written = WriteBatch(batch)
    assert trace.carry(written) is written and trace.exemplar() is None
assert tracing.batch("c", batch) is tracing.batch("c", batch)
loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
assert not loaded, loaded
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


@pytest.mark.parametrize(
    ("env", "exporters"),
    [
        ({}, ()),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ("otlp",)),
        ({"OTEL_TRACES_EXPORTER": "console"}, ("console",)),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, ()),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, ()),
    ],
)
def test_standard_variables_decide_whether_tracing_is_on(
    env: dict[str, str], exporters: tuple[str, ...]
) -> None:
    problems: list[Problem] = []
    settings = load(TracingSettings, env, problems)
    assert settings is not None and not problems
    assert settings.exporters == exporters
    if "OTEL_EXPORTER_OTLP_ENDPOINT" in env and exporters:
        assert settings.traces_endpoint == "http://collector:4318/v1/traces"


def test_unknown_exporters_and_grpc_are_configuration_errors() -> None:
    problems: list[Problem] = []
    load(TracingSettings, {"OTEL_TRACES_EXPORTER": "jaeger"}, problems)
    load(TracingSettings, {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, problems)
    assert [p.variable for p in problems] == ["OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_PROTOCOL"]

"""`ctx.http` against a real local HTTP server: what is retriable, what is poison, what the
runner makes of it, and the record's trace headers on every request."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from connectors import PoisonError, RetriableError, TransformContext
from connectors.core.context import ResourceSettings
from connectors.core.transform import Chain
from connectors.core.transform_http import retry_after_s
from connectors.observability.metrics import REGISTRY
from connectors.testing import run_transform
from connectors.testing.fakes import MemoryDeadLetters, MemoryReader, MemoryWriter
from harness.http_sink import Fault, HttpSink
from tests.unit.test_runner import make_runner, pipeline, records, run

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture(scope="module")
def sink() -> Iterator[HttpSink]:
    server = HttpSink().start()
    try:
        yield server
    finally:
        server.release()
        server.close()


def fetcher(url: str) -> Any:
    async def fetch(message: bytes, ctx: TransformContext) -> bytes:
        response = await ctx.http.get(url)
        return response.content or message

    return fetch


@pytest.mark.parametrize(
    ("fault", "reason", "retry_after"),
    [
        (Fault(status=503), "http_503", None),
        (Fault(status=500), "http_500", None),
        (Fault(status=429, retry_after="7"), "http_429", 7.0),
        (Fault(status=408), "http_408", None),
        (Fault(drop=True), "connection", None),
        (Fault(delay_s=0.5), "timeout", None),
    ],
)
def test_retriable_answers(
    sink: HttpSink, fault: Fault, reason: str, retry_after: float | None
) -> None:
    path = f"/retriable/{reason}"
    # A GET whose connection drops is sent once more at once (RFC 9112 9.3.1, as aiohttp and
    # browsers do): only a second drop reaches the transform.
    sink.plan(path, *([fault] * (2 if fault.drop else 1)))
    settings = ResourceSettings(http_timeout_s=0.2)
    [outcome] = run_transform(fetcher(sink.url(path)), [b"m"], settings=settings)
    assert isinstance(outcome.retry, RetriableError), outcome
    assert getattr(outcome.retry, "reason", None) == reason
    assert outcome.retry.retry_after == retry_after
    assert str(outcome.retry).startswith(f"transform:fetch at topic[0]@0: GET {sink.url(path)}")


def test_a_dropped_get_is_resent_once_at_once(sink: HttpSink) -> None:
    path = "/dropped-once"
    sink.plan(path, Fault(drop=True))
    [outcome] = run_transform(fetcher(sink.url(path)), [b"m"])
    assert outcome.retry is None and outcome.poison is None, outcome
    assert [r.path for r in sink.received(path)] == [path, path]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_other_client_errors_are_poison(sink: HttpSink, status: int) -> None:
    path = f"/poison/{status}"
    sink.plan(path, Fault(status=status))
    [outcome] = run_transform(fetcher(sink.url(path) + "?token=secret"), [b"m"])
    assert outcome.poison is not None and outcome.retry is None
    assert outcome.poison.stage == "transform:fetch"
    assert f"GET {sink.url(path)} answered {status}" in str(outcome.poison)
    assert "secret" not in str(outcome.poison)  # a query string can hold credentials
    assert isinstance(outcome.poison.__cause__, PoisonError)


def test_success_and_the_records_trace_headers(sink: HttpSink) -> None:
    path = "/ok"
    sink.plan(path, Fault(status=200, body=b"template"), Fault(status=204))
    headers = (("traceparent", TRACEPARENT.encode()), ("other", b"x"))
    outcomes = run_transform(fetcher(sink.url(path)), [b"a", b"b"], headers=headers, concurrency=1)
    assert [o.values for o in outcomes] == [[b"template"], [b"b"]]
    got = sink.received(path)
    assert [r.headers.get("traceparent") for r in got] == [TRACEPARENT, TRACEPARENT]
    assert all("other" not in r.headers for r in got)


def test_retry_after_dates_and_bounds() -> None:
    assert retry_after_s("12") == 12.0
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0
    assert retry_after_s("99999999") == 3600.0
    assert retry_after_s("soon") is None and retry_after_s(None) is None


async def test_runner_retries_503s_then_stores_and_dead_letters_404s(sink: HttpSink) -> None:
    path = "/registry"
    sink.plan(path, Fault(status=503), Fault(status=503))

    async def lookup(message: bytes, ctx: TransformContext) -> bytes:
        where = "/missing" if ctx.offset == 2 else path
        if where == "/missing":
            sink.plan(where, Fault(status=404))
        await ctx.http.get(sink.url(where))
        return message

    reader = MemoryReader([records(0, 0, 4)])
    writer = MemoryWriter()
    letters = MemoryDeadLetters()
    pipe = dataclasses.replace(
        pipeline(TRANSFORM_CONCURRENCY="1"), chain=Chain((("lookup", lookup),))
    )
    labels = {"connector": "unit", "transform": "lookup", "reason": "http_503"}
    before = REGISTRY.get_sample_value("connector_transform_retries_total", labels) or 0
    await run(make_runner(pipe, reader, writer, letters=letters))
    assert writer.store == {b"k0-0": b"v0", b"k0-1": b"v1", b"k0-3": b"v3"}
    assert [(d.record.offset, d.stage) for d in letters.letters] == [(2, "transform:lookup")]
    assert "answered 404" in letters.letters[0].message
    assert reader.commits == [{("raw", 0): 4}]
    assert REGISTRY.get_sample_value("connector_transform_retries_total", labels) == before + 2


async def test_with_tracing_on_requests_carry_the_records_process_span(sink: HttpSink) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from connectors.observability import tracing

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    path = "/traced"
    sink.plan(path, Fault(status=200))
    try:
        traced = records(0, 0, 1)[0]._replace(headers=(("traceparent", TRACEPARENT.encode()),))
        reader = MemoryReader([[traced]])
        writer = MemoryWriter()
        pipe = dataclasses.replace(pipeline(), chain=Chain((("fetch", fetcher(sink.url(path))),)))
        await run(make_runner(pipe, reader, writer))
    finally:
        tracing.shutdown()
    [request] = sink.received(path)
    sent = request.headers["traceparent"]
    [process] = [s for s in exporter.get_finished_spans() if s.name == "process raw"]
    context = process.get_span_context()
    assert sent == f"00-{context.trace_id:032x}-{context.span_id:016x}-01"
    assert sent.split("-")[1] == TRACEPARENT.split("-")[1]  # the producer's trace
    assert sent != TRACEPARENT  # a child span of the record's, not its producer's

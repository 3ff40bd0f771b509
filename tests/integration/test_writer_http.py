"""The HTTP writer against a real HTTP server on loopback that fails on demand
(`harness.http_sink`): 5xx, 429 with Retry-After, slow answers, dropped connections,
requests that never get an answer."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from connectors import (
    FatalError,
    PoisonError,
    RetriableError,
    WriteBatch,
    Writer,
    WriterContext,
)
from connectors.testing.conformance import Delivered, Target, WriterContract, make_batch
from harness.http_sink import Fault, HttpSink, Received
from harness.kafka import KafkaBroker, consumer_group_offsets, create_topic
from harness.kcat import produce
from harness.ports import free_port
from tests.conftest import ROOT, connector_command, connector_env, run_connector
from tests.waiting import wait_for
from writers.http import PLUGIN
from writers.http.settings import HTTPSettings

pytestmark = pytest.mark.integration

CONTEXT = WriterContext(connector_name="http-it")


@pytest.fixture(scope="module")
def sink() -> Iterator[HttpSink]:
    with HttpSink() as server:
        yield server


def http_writer(url: str, **extra: Any) -> Writer:
    settings = HTTPSettings(url=url, **extra)
    writer: Writer = PLUGIN.build(settings, CONTEXT)
    return writer


def ranged(key: str) -> str:
    """A batch-mode key without its content digest: `<connector>:<topic>:<p>:<first>-<last>`."""
    head, _, digest = key.rpartition(":")
    assert len(digest) == 16 and int(digest, 16) >= 0, key
    return head


def delivered(requests: Sequence[Received], key_header: str = "idempotency-key") -> list[Delivered]:
    """Each document of each accepted request, identified by the request's key and its
    place in the body."""
    found = []
    for request in requests:
        for n, doc in enumerate(request.documents()):
            key = None if doc["key_b64"] is None else base64.b64decode(doc["key_b64"])
            value = None if doc["value_b64"] is None else base64.b64decode(doc["value_b64"])
            found.append(Delivered(f"{request.headers[key_header]}#{n}", key, value))
    return found


class SinkTarget:
    def __init__(self, sink: HttpSink, path: str, **settings: Any) -> None:
        self.sink, self.path, self.settings = sink, path, settings

    def writer(self) -> Writer:
        return http_writer(self.sink.url(self.path), **self.settings)

    async def read(self) -> Sequence[Delivered]:
        return delivered(self.sink.accepted(self.path))


class HttpContract(WriterContract):
    keeps_history = True
    replay_redelivers = True
    failures = {
        "unreachable": RetriableError,
        "server_error": RetriableError,
        "throttled": RetriableError,
        "too_slow": RetriableError,
        "dropped_connection": RetriableError,
        "rejected": PoisonError,
        "unauthorised": FatalError,
        "redirected": FatalError,
    }
    mode: dict[str, Any] = {}

    @pytest.fixture(autouse=True)
    def _sink(self, sink: HttpSink) -> None:
        self.sink = sink

    async def new_target(self) -> Target:
        return SinkTarget(self.sink, f"/contract/{uuid.uuid4().hex[:12]}", **self.mode)

    async def fail_partway(self, target: Target) -> tuple[Writer, WriteBatch | None]:
        assert isinstance(target, SinkTarget)
        # Two requests per partition (or one per record): the second request answers 500.
        self.sink.plan(target.path, Fault(), Fault(status=500))
        return target.writer(), None

    async def failing_write(self, scenario: str) -> tuple[Writer, WriteBatch | None]:
        path = f"/fail/{uuid.uuid4().hex[:12]}"
        faults = {
            "server_error": Fault(status=503),
            "throttled": Fault(status=429, retry_after="3"),
            "too_slow": Fault(delay_s=2.0),
            "dropped_connection": Fault(drop=True),
            "rejected": Fault(status=422, body=b'{"error": "no such customer"}'),
            "unauthorised": Fault(status=401),
            "redirected": Fault(status=308),
        }
        if scenario == "unreachable":
            return http_writer(f"http://127.0.0.1:{free_port()}/", **self.mode), None
        self.sink.plan(path, *[faults[scenario]] * 20)
        return http_writer(self.sink.url(path), timeout_s=0.5, **self.mode), None


class TestHttpBatchContract(HttpContract):
    mode = {"batch": True, "batch_max_messages": 4}


class TestHttpPerRecordContract(HttpContract):
    mode = {"batch": False}


class TestHttpNdjsonContract(HttpContract):
    mode = {"batch": True, "format": "ndjson"}


async def test_a_retried_request_carries_the_same_key_and_body(sink: HttpSink) -> None:
    path = f"/retry/{uuid.uuid4().hex[:8]}"
    sink.plan(path, Fault(status=500), Fault(status=429, retry_after="7"))
    batch = make_batch("prefs", [(2, o, b"user-%d" % o, b"v%d" % o) for o in range(3, 6)])
    writer = http_writer(
        sink.url(path),
        headers="Authorization: Bearer s3cr3t; X-Team: comms",
        allow_insecure_auth=True,  # the sink speaks plain http on loopback
    )
    await writer.start()
    with pytest.raises(RetriableError):
        await writer.write(batch)
    with pytest.raises(RetriableError) as throttled:
        await writer.write(batch)
    assert throttled.value.retry_after == 7.0
    await writer.write(batch)
    await writer.close()

    first, second, third = sink.received(path)
    assert [r.status for r in (first, second, third)] == [500, 429, 200]
    assert {ranged(r.headers["idempotency-key"]) for r in (first, second, third)} == {
        "http-it:prefs:2:3-5"
    }
    assert len({r.headers["idempotency-key"] for r in (first, second, third)}) == 1
    assert first.body == second.body == third.body
    assert third.headers["authorization"] == "Bearer s3cr3t"
    assert third.headers["x-team"] == "comms"
    assert third.headers["content-type"] == "application/json"


async def test_large_batches_go_in_requests_of_at_most_batch_max_messages(
    sink: HttpSink,
) -> None:
    path = f"/chunks/{uuid.uuid4().hex[:8]}"
    rows = [(p, o, b"k%d" % p, b"p%d-o%d" % (p, o)) for p in range(2) for o in range(10)]
    writer = http_writer(sink.url(path), batch_max_messages=4)
    await writer.start()
    await writer.write(make_batch("t", rows))
    await writer.close()

    accepted = sink.accepted(path)
    assert max(len(r.documents()) for r in accepted) == 4
    for p in range(2):
        keys = [
            ranged(r.headers["idempotency-key"])
            for r in accepted
            if r.headers["idempotency-key"].startswith(f"http-it:t:{p}:")
        ]
        assert keys == [f"http-it:t:{p}:0-3", f"http-it:t:{p}:4-7", f"http-it:t:{p}:8-9"]
        assert [d.value for d in delivered(accepted) if d.key == b"k%d" % p] == [
            b"p%d-o%d" % (p, o) for o in range(10)
        ]


async def test_per_record_mode_keeps_partition_order_and_caps_requests_in_flight(
    sink: HttpSink,
) -> None:
    path = f"/order/{uuid.uuid4().hex[:8]}"
    sink.plan(path, *[Fault(delay_s=0.05)] * 40)
    rows = [(p, o, b"k%d" % p, b"p%d-o%d" % (p, o)) for p in range(4) for o in range(10)]
    writer = http_writer(sink.url(path), batch=False, max_in_flight=3)
    await writer.start()
    await writer.write(make_batch("t", rows))
    await writer.close()

    got = delivered(sink.accepted(path))
    for p in range(4):
        assert [d.value for d in got if d.key == b"k%d" % p] == [
            b"p%d-o%d" % (p, o) for o in range(10)
        ]
    assert sink.peak_in_flight(path) == 3
    keys = [r.headers["idempotency-key"] for r in sink.accepted(path)]
    assert sorted(keys) == sorted(f"http-it:t:{p}:{o}" for p in range(4) for o in range(10))


async def test_a_rejected_record_is_named_and_stops_only_its_partition(sink: HttpSink) -> None:
    path = f"/reject/{uuid.uuid4().hex[:8]}"
    bad = base64.b64encode(b"bad").decode().encode()
    sink.reject_when(path, lambda body: bad in body, Fault(status=400))
    rows = [(0, 0, b"a", b"ok"), (0, 1, b"a", b"bad"), (0, 2, b"a", b"ok"), (1, 0, b"b", b"ok")]
    batch = make_batch("t", rows)
    writer = http_writer(sink.url(path), batch=False)
    await writer.start()
    with pytest.raises(PoisonError) as rejected:
        await writer.write(batch)
    await writer.close()
    assert rejected.value.record is batch.batch.records[1]
    assert sorted(r.headers["idempotency-key"] for r in sink.accepted(path)) == [
        "http-it:t:0:0",
        "http-it:t:1:0",
    ]


def test_settings_mask_header_values_and_query_tokens() -> None:
    settings = HTTPSettings(
        url="https://crm.example/api/prefs?api_key=abc123&v=2",
        headers='{"Authorization": "Bearer abc123", "X-Team": "comms"}',  # type: ignore[arg-type]
    )
    shown = settings.describe()
    assert "abc123" not in shown
    assert "HTTP_HEADERS=Authorization: *****; X-Team: *****" in shown.splitlines()
    assert "api_key=*****" in shown
    assert settings.header_pairs() == [("Authorization", "Bearer abc123"), ("X-Team", "comms")]


def test_bad_headers_are_a_config_error_that_shows_no_value() -> None:
    env = connector_env(
        CONNECTOR_NAME="c", TOPICS="t", TOPIC_SCHEMAS="t=bytes", WRITER="http",
        HTTP_URL="http://127.0.0.1:1/", HTTP_HEADERS="Authorization Bearer hunter2",
    )  # fmt: skip
    checked = run_connector("check", env=env)
    assert checked.returncode == 2
    assert "HTTP_HEADERS" in checked.stderr and "hunter2" not in checked.stderr


# ----------------------------------------------------------------- through the connector


def produce_raw(kafka: KafkaBroker, topic: str, per_partition: int) -> dict[int, int]:
    create_topic(kafka.bootstrap, topic, partitions=3)
    rows = [
        (p, f"user-{p}-{o % 40}".encode(), f"pref {p}/{o}".encode())
        for p in range(3)
        for o in range(per_partition)
    ]
    return produce(kafka.bootstrap, topic, rows)


def http_env(kafka: KafkaBroker, url: str, topic: str, group: str, **extra: str) -> dict[str, str]:
    return connector_env(
        **{
            "CONNECTOR_NAME": group,
            "TOPICS": topic,
            "TOPIC_SCHEMAS": f"{topic}=bytes",
            "WRITER": "http",
            "HTTP_URL": url,
            "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
            "KAFKA_SESSION_TIMEOUT_MS": "6000",
            "BATCH_MAX_MESSAGES": "200",
            "BATCH_MAX_WAIT_MS": "100",
            "RETRY_INITIAL_MS": "20",
            "RETRY_MAX_MS": "200",
            "DLQ_CREATE": "true",
            "PYTHONPATH": str(ROOT),
            **extra,
        }
    )


def by_record(requests: Sequence[Received]) -> dict[bytes, set[tuple[str, int]]]:
    """Record value → the (idempotency key, place in body) of every delivery of it."""
    seen: dict[bytes, set[tuple[str, int]]] = {}
    for request in requests:
        for n, doc in enumerate(request.documents()):
            value = base64.b64decode(doc["value_b64"])
            seen.setdefault(value, set()).add((request.headers["idempotency-key"], n))
    return seen


def expected_values(ends: dict[int, int]) -> set[bytes]:
    return {f"pref {p}/{o}".encode() for p, end in ends.items() for o in range(end)}


def test_10k_records_arrive_through_faults(kafka: KafkaBroker, sink: HttpSink, unique: str) -> None:
    topic, group, path = f"http-{unique}", f"http-{unique}", f"/e2e/{unique}"
    ends = produce_raw(kafka, topic, 3334)
    sink.plan(
        path,
        Fault(status=500),
        Fault(status=429, retry_after="1"),
        Fault(delay_s=1.5),  # slower than HTTP_TIMEOUT_S
        Fault(drop=True),
        Fault(status=502),
        Fault(status=503, retry_after="0"),
    )
    env = http_env(kafka, sink.url(path), topic, group, HTTP_TIMEOUT_S="1")
    done = run_connector("run", "--until-caught-up", env=env)
    assert done.returncode == 0, done.stderr
    assert "caught up: 10002/10002 records" in done.stderr

    received = sink.received(path)
    assert [r.status for r in received[:6]] == [500, 429, 200, None, 502, 503]
    seen = by_record(sink.accepted(path))
    assert set(seen) == expected_values(ends)
    by_key: dict[str, bytes] = {}
    for request in received:  # a key always carries the same body, also across failures
        key = request.headers["idempotency-key"]
        assert by_key.setdefault(key, request.body) == request.body
    table = consumer_group_offsets(kafka.bootstrap, group)
    assert {p: c for (t, p), (c, _) in table.items() if t == topic} == ends


def test_kill_9_mid_request_then_restart(
    kafka: KafkaBroker, sink: HttpSink, unique: str, tmp_path: Path
) -> None:
    topic, group, path = f"httpk-{unique}", f"httpk-{unique}", f"/kill/{unique}"
    ends = produce_raw(kafka, topic, 400)
    gate = tmp_path / "gate"
    gate.mkdir()
    env = http_env(
        kafka, sink.url(path), topic, group,
        HTTP_BATCH="false", HTTP_TIMEOUT_S="60", HTTP_MAX_IN_FLIGHT="3",
        TRANSFORM_MODULES="tests.fixtures.gate", TRANSFORMS="gate",
        GATE_DIR=str(gate), GATE_PARTITION="1", GATE_OFFSET="200",
    )  # fmt: skip
    process = subprocess.Popen(
        connector_command("run", "--until-caught-up"),
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_for(lambda: (gate / "reached").exists(), timeout=60, what="the gate")
        sink.plan(path, Fault(hang=True))
        before = len(sink.received(path))
        (gate / "open").touch()
        wait_for(
            lambda: any(r.status is None for r in sink.received(path)[before:]),
            timeout=60,
            what="a request the sink received but never answered",
        )
        process.kill()
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)
    assert process.returncode == -signal.SIGKILL
    sink.release()
    hung = [r for r in sink.received(path) if r.status is None]
    assert len(hung) == 1

    restarted = run_connector("run", "--until-caught-up", env=env)
    assert restarted.returncode == 0, restarted.stderr

    everything = sink.received(path)
    seen = by_record(everything)
    assert set(seen) == expected_values(ends)
    assert set(by_record(sink.accepted(path))) == expected_values(ends)
    repeats = {value: keys for value, keys in seen.items() if len(keys) > 1}
    assert not repeats, f"records delivered under different keys: {list(repeats.items())[:3]}"
    hung_key = hung[0].headers["idempotency-key"]
    replays = [r for r in sink.accepted(path) if r.headers["idempotency-key"] == hung_key]
    assert [r.body for r in replays] == [hung[0].body]
    assert json.loads(hung[0].body)["value_b64"]


def test_credentials_over_plain_http_are_refused_unless_allowed() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="over plain http://"):
        HTTPSettings(url="http://crm.internal/api", headers="X-Api-Key: k1")  # type: ignore[arg-type]
    allowed = HTTPSettings(
        url="http://crm.internal/api",
        headers="X-Api-Key: k1",  # type: ignore[arg-type]
        allow_insecure_auth=True,
    )
    assert allowed.header_pairs() == [("X-Api-Key", "k1")]
    plain = HTTPSettings(url="http://crm.internal/api", headers="X-Team: comms")  # type: ignore[arg-type]
    assert plain.header_pairs() == [("X-Team", "comms")]


async def test_batch_mode_isolates_a_rejected_record_by_splitting_the_request(
    sink: HttpSink,
) -> None:
    path = f"/bisect/{uuid.uuid4().hex[:8]}"
    bad = base64.b64encode(b"bad").decode().encode()
    sink.reject_when(path, lambda body: bad in body, Fault(status=400))
    rows = [(0, o, b"k%d" % o, b"bad" if o == 57 else b"ok-%d" % o) for o in range(100)]
    rows += [(1, o, b"j%d" % o, b"p1-%d" % o) for o in range(10)]
    batch = make_batch("t", rows)
    writer = http_writer(sink.url(path), batch_max_messages=100)
    await writer.start()
    with pytest.raises(PoisonError) as rejected:
        await writer.write(batch)
    assert rejected.value.record is batch.batch.records[57]
    before = len(sink.received(path))
    # The runner dead-letters it and writes the batch again without it.
    rest = WriteBatch(
        batch.batch,
        tuple(e for e in batch.entries if e.source.offset != 57 or e.source.partition != 0),
    )
    await writer.write(rest)
    await writer.close()

    accepted = sink.accepted(path)
    values = [d.value for d in delivered(accepted)]
    assert sorted(values) == sorted(v for _, _, _, v in rows if v != b"bad")
    assert len(values) == len(set(values)), "a record was delivered twice"
    # Partition 0 arrived in offset order; only requests holding the record were refused.
    assert [v for v in values if v.startswith(b"ok-")] == [
        b"ok-%d" % o for o in range(100) if o != 57
    ]
    refused = [r for r in sink.received(path) if r.status == 400]
    assert all(bad in r.body for r in refused)
    assert len(refused) == 8  # 100 records: 7 halvings down to the one
    # The second attempt sent only what had not been taken, under keys of its own.
    again = sink.received(path)[before:]
    assert again and all(r.status == 200 for r in again)
    keys = [ranged(r.headers["idempotency-key"]) for r in sink.received(path)]
    bodies: dict[str, bytes] = {}
    for request in sink.received(path):
        key = request.headers["idempotency-key"]
        assert bodies.setdefault(key, request.body) == request.body
    assert "http-it:t:0:57-57" in keys


async def test_a_retried_split_repeats_the_same_requests(sink: HttpSink) -> None:
    path = f"/bisect-retry/{uuid.uuid4().hex[:8]}"
    bad = base64.b64encode(b"bad").decode().encode()
    sink.reject_when(path, lambda body: bad in body, Fault(status=422))
    rows = [(0, o, b"k", b"bad" if o == 5 else b"ok-%d" % o) for o in range(8)]
    batch = make_batch("t", rows)
    writer = http_writer(sink.url(path))
    await writer.start()
    with pytest.raises(PoisonError):
        await writer.write(batch)
    first_keys = [r.headers["idempotency-key"] for r in sink.accepted(path)]
    # The next request fails for a retriable reason; the retry finds the same requests.
    sink.plan(path, Fault(status=503))
    rest = WriteBatch(batch.batch, tuple(e for e in batch.entries if e.source.offset != 5))
    with pytest.raises(RetriableError):
        await writer.write(rest)
    await writer.write(rest)
    await writer.close()
    keys = [r.headers["idempotency-key"] for r in sink.accepted(path)]
    assert keys[: len(first_keys)] == first_keys
    assert [ranged(k) for k in first_keys] == ["http-it:t:0:0-3", "http-it:t:0:4-4"]
    assert [ranged(k) for k in keys[len(first_keys) :]] == ["http-it:t:0:6-7"]
    failed = [r for r in sink.received(path) if r.status == 503]
    assert [r.headers["idempotency-key"] for r in failed] == keys[len(first_keys) :]

"""The HTTP writer through a whole connector against a flaky, deduplicating receiver
(`harness.http_sink` chaos: a share of requests answered 500, a share held past the
client's timeout). What must hold: every record is accepted, the receiver takes each
document about once (a retry resends only what failed), no idempotency key is accepted
twice, also across a `kill -9` and a restart, and a high failure rate does not become a
resend storm."""

from __future__ import annotations

import base64
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest

from harness.http_sink import HttpSink, Received
from harness.kafka import KafkaBroker, consumer_group_offsets, create_topic
from harness.kcat import produce
from tests.conftest import ROOT, connector_command, connector_env, run_connector
from tests.waiting import wait_for

pytestmark = pytest.mark.integration
KEY = "idempotency-key"


@pytest.fixture(scope="module")
def sink() -> Iterator[HttpSink]:
    with HttpSink() as server:
        yield server


@dataclass(frozen=True)
class Figures:
    """What the receiver saw, in documents (items of request bodies) and requests."""

    distinct: int
    received: int  # every document of every request, failed or stalled or repeated
    answered_ok: int  # documents of requests answered 2xx (repeats of a key included)
    accepted: int  # documents of requests accepted: 2xx, first time for their key
    requests: int
    failed_requests: int
    repeats: int
    keys_accepted_twice: int

    def line(self) -> str:
        return (
            f"distinct {self.distinct}, received {self.received} "
            f"({self.received / self.distinct:.3f}x), accepted {self.accepted} "
            f"({self.accepted / self.distinct:.3f}x), answered 2xx {self.answered_ok}; "
            f"requests {self.requests}, failed {self.failed_requests}, "
            f"repeated keys {self.repeats}, keys accepted twice {self.keys_accepted_twice}"
        )


def values(requests: Sequence[Received]) -> list[bytes]:
    return [
        base64.b64decode(doc["value_b64"]) for request in requests for doc in request.documents()
    ]


def figures(sink: HttpSink, path: str, expected: set[bytes]) -> Figures:
    received = sink.received(path)
    accepted = sink.accepted(path)
    taken = Counter(r.headers[KEY] for r in accepted)
    assert set(values(accepted)) == expected, "a record was never accepted"
    return Figures(
        distinct=len(expected),
        received=len(values(received)),
        answered_ok=len(values([r for r in received if r.status is not None and r.status < 300])),
        accepted=len(values(accepted)),
        requests=len(received),
        failed_requests=sum(1 for r in received if r.status is None or r.status >= 300),
        repeats=len(sink.repeats(path)),
        keys_accepted_twice=sum(1 for n in taken.values() if n > 1),
    )


def produce_values(kafka: KafkaBroker, topic: str, total: int) -> set[bytes]:
    create_topic(kafka.bootstrap, topic, partitions=3)
    rows = [(n % 3, b"user-%d" % (n % 997), b"pref %d" % n) for n in range(total)]
    produce(kafka.bootstrap, topic, rows)
    return {value for _, _, value in rows}


def env_for(kafka: KafkaBroker, url: str, unique: str, **extra: str) -> dict[str, str]:
    settings = {
        "RETRY_INITIAL_MS": "20", "RETRY_MAX_MS": "200", "HTTP_TIMEOUT_S": "0.5", **extra
    }  # fmt: skip
    return connector_env(
        CONNECTOR_NAME=f"chaos-{unique}", TOPICS=f"chaos-{unique}",
        TOPIC_SCHEMAS=f"chaos-{unique}=bytes", WRITER="http", HTTP_URL=url,
        KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap, KAFKA_SESSION_TIMEOUT_MS="6000",
        PYTHONPATH=str(ROOT), LOG_LEVEL="WARNING", **settings,
    )  # fmt: skip


def caught_up(kafka: KafkaBroker, unique: str) -> dict[int, int]:
    table = consumer_group_offsets(kafka.bootstrap, f"chaos-{unique}")
    return {p: c for (t, p), (c, _) in table.items() if t == f"chaos-{unique}"}


def test_20k_records_through_500s_and_stalls_each_document_accepted_about_once(
    kafka: KafkaBroker, sink: HttpSink, unique: str
) -> None:
    path = f"/chaos/{unique}"
    expected = produce_values(kafka, f"chaos-{unique}", 20_000)
    sink.chaos(path, fail_ratio=0.20, stall_ratio=0.05, stall_s=1.0, rng=15)
    sink.idempotent(path)
    started = time.monotonic()
    env = env_for(kafka, sink.url(path), unique, HTTP_BATCH_MAX_MESSAGES="100")
    done = run_connector("run", "--until-caught-up", env=env, timeout=600)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-2000:]
    found = figures(sink, path, expected)
    print(f"\n20k through 20% 500s + 5% stalls in {took:.1f}s: {found.line()}")
    assert found.keys_accepted_twice == 0
    assert found.accepted <= 1.05 * found.distinct
    assert found.received <= 1.4 * found.distinct
    assert sum(caught_up(kafka, unique).values()) == 20_000


def test_kill_9_mid_run_then_restart_accepts_no_key_twice(
    kafka: KafkaBroker, sink: HttpSink, unique: str
) -> None:
    path = f"/chaos-kill/{unique}"
    expected = produce_values(kafka, f"chaos-{unique}", 20_000)
    sink.chaos(path, fail_ratio=0.20, stall_ratio=0.05, stall_s=1.0, rng=16)
    sink.idempotent(path)
    env = env_for(kafka, sink.url(path), unique, HTTP_BATCH_MAX_MESSAGES="100")
    process = subprocess.Popen(
        connector_command("run", "--until-caught-up"),
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(
            lambda: len(values(sink.accepted(path))) >= 9_000,
            timeout=300,
            what="half of the records accepted",
            interval=0.05,
        )
        process.kill()
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL
    restarted = run_connector("run", "--until-caught-up", env=env, timeout=600)
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    found = figures(sink, path, expected)
    print(f"\n20k with a kill -9 after 9,000 accepted: {found.line()}")
    assert found.keys_accepted_twice == 0
    assert found.accepted <= 1.05 * found.distinct
    assert sum(caught_up(kafka, unique).values()) == 20_000


def test_a_20_percent_failure_rate_is_no_resend_storm(
    kafka: KafkaBroker, sink: HttpSink, unique: str
) -> None:
    """6,000 records in requests of 100 with retries capped at 100 ms: every attempt
    resends only the requests that failed, so the run ends in seconds, not never."""
    path = f"/storm/{unique}"
    expected = produce_values(kafka, f"chaos-{unique}", 6_000)
    sink.chaos(path, fail_ratio=0.20, rng=17)
    env = env_for(
        kafka, sink.url(path), unique, HTTP_BATCH_MAX_MESSAGES="100", RETRY_MAX_MS="100",
        HTTP_TIMEOUT_S="10",
    )  # fmt: skip
    started = time.monotonic()
    done = run_connector("run", "--until-caught-up", env=env, timeout=300)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-2000:]
    found = figures(sink, path, expected)
    print(f"\nstorm case, 6,000 records in {took:.1f}s: {found.line()}")
    assert took < 60
    assert found.accepted == found.distinct  # nothing accepted is ever sent again
    assert found.received <= 1.4 * found.distinct

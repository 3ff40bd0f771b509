"""Routed objects on a real S3 server: audit events by account and event day, a kill -9.

10,000 `audit.v1.AuditEvent`s of 50 accounts over 3 event days (not the day they reach
Kafka) go through the connector with `S3_KEY_TEMPLATE` by account and event date and a
small `S3_OBJECT_MAX_BYTES`. The connector is killed with SIGKILL while the S3 server has
stored uploads whose answers never reached it, then restarted: every object holds only its
account's and day's events, none is over the cap, and every event is stored exactly once.
"""

from __future__ import annotations

import gzip
import json
import random
import signal
import statistics
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.config.schemas import find_message_class, load_descriptor_set
from harness.kafka import KafkaBroker, consumer_group_offsets, create_topic
from harness.kcat import produce
from harness.s3 import AnswerHold, S3ProxyServer
from tests.conftest import ROOT, connector_command, connector_env, run_connector
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

BUCKET = "routed-it"
EXAMPLE = ROOT / "examples" / "audit-log-push"
EVENTS, ACCOUNTS, DAYS, PARTITIONS = 10_000, 50, 3, 2
CAP = 1024
FIRST_DAY = datetime(2026, 11, 28, tzinfo=UTC)
TEMPLATE = (
    "account={value.account_id}/dt={year}-{month}-{day}/"
    "{topic}-{partition}-{first_offset}-{last_offset}"
)


@pytest.fixture(scope="module")
def s3() -> Iterator[S3ProxyServer]:
    with S3ProxyServer() as server:
        server.create_bucket(BUCKET)
        yield server


def audit_events(topic: str) -> list[tuple[int, bytes, bytes]]:
    """Events in no order of day or account, each with some incompressible detail, so that
    a path's share of a write is several objects under the cap."""
    event = find_message_class(
        "audit.v1.AuditEvent", (load_descriptor_set(EXAMPLE / "audit.binpb"),)
    )
    assert event is not None
    rng = random.Random(20261128)
    rows = []
    for n in range(EVENTS):
        account = 1000 + rng.randrange(ACCOUNTS)
        at = FIRST_DAY.timestamp() * 1000 + rng.randrange(DAYS * 86_400_000)
        message = event(
            id=f"evt-{n:06d}",
            account_id=account,
            actor_email=f"admin{n % 5}@customer{account}.example",
            action="zone.settings.update",
            resource=f"zone/z{n % 400:05d}",
            metadata={"request": rng.randbytes(48).hex()},
            occurred_at_ms=int(at),
        )
        rows.append((n % PARTITIONS, str(account).encode(), message.SerializeToString()))
    return rows


def env_for(kafka: KafkaBroker, s3: S3ProxyServer, topic: str, prefix: str) -> dict[str, str]:
    return connector_env(
        CONNECTOR_NAME=topic,
        TOPICS=topic,
        TOPIC_SCHEMAS=f"{topic}=audit.v1.AuditEvent",
        PROTO_DESCRIPTOR_SET=str(EXAMPLE / "audit.binpb"),
        KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap,
        KAFKA_SESSION_TIMEOUT_MS="6000",
        BATCH_MAX_MESSAGES="2000",
        BATCH_MAX_WAIT_MS="100",
        WRITER="s3",
        S3_PREFIX=prefix,
        S3_KEY_TEMPLATE=TEMPLATE,
        S3_TIME_FIELD="occurred_at_ms",
        S3_OBJECT_MAX_BYTES=str(CAP),
        S3_FLUSH_INTERVAL_S="0.5",
        PYTHONPATH=str(ROOT),
        **s3.env(BUCKET),
    )


def check_routed(objects: dict[str, bytes], prefix: str) -> Counter[str]:
    """Every event under its own account and day; returns how often each id is stored."""
    ids: Counter[str] = Counter()
    for key, body in objects.items():
        account, day, _ = key[len(prefix) + 1 :].split("/")
        for line in gzip.decompress(body).decode().splitlines():
            doc = json.loads(line)
            at = datetime.fromtimestamp(int(doc["occurred_at_ms"]) / 1000, tz=UTC)
            assert account == f"account={doc['account_id']}", key
            assert day == f"dt={at:%Y-%m-%d}", key
            ids[doc["id"]] += 1
    return ids


def test_routed_by_account_and_event_day_survives_kill_9(
    kafka: KafkaBroker, s3: S3ProxyServer, unique: str, tmp_path: Path
) -> None:
    topic, prefix = f"audit-{unique}", f"routed-{unique}"
    create_topic(kafka.bootstrap, topic, partitions=PARTITIONS)
    ends = produce(kafka.bootstrap, topic, audit_events(topic))
    gate = tmp_path / "gate"
    gate.mkdir()
    hold = AnswerHold(s3.port)
    env = env_for(kafka, s3, topic, prefix)
    killed_env = {
        **env, "S3_ENDPOINT_URL": hold.endpoint, "TRANSFORM_MODULES": "tests.fixtures.gate",
        "TRANSFORMS": "gate", "GATE_DIR": str(gate), "GATE_PARTITION": "0",
        "GATE_OFFSET": "2500",
    }  # fmt: skip
    started = time.monotonic()
    log = (tmp_path / "killed.log").open("w")
    process = subprocess.Popen(
        connector_command("run", "--until-caught-up"),
        env=killed_env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log,
    )  # fmt: skip
    try:
        wait_for(
            lambda: (gate / "reached").exists() or process.poll() is not None,
            timeout=180,
            what="the gate",
        )
        assert process.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
        hold.hold()
        at_hold = len(s3.files(BUCKET, prefix))
        (gate / "open").touch()
        wait_for(
            lambda: len(s3.files(BUCKET, prefix)) > at_hold,
            timeout=60,
            what="uploads S3 stored but whose answers never arrived",
        )
        process.kill()
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)
        log.close()
        hold.close()
    assert process.returncode == -signal.SIGKILL
    left = s3.files(BUCKET, prefix)
    committed = consumer_group_offsets(kafka.bootstrap, topic)
    before = sum(c or 0 for (t, _), (c, _) in committed.items() if t == topic)
    assert before < EVENTS, "the kill must land mid-run"
    assert sum(check_routed(left, prefix).values()) > before, "no upload past the commit"

    restart = time.monotonic()
    done = run_connector("run", "--until-caught-up", env=env, timeout=300)
    finished = time.monotonic()
    assert done.returncode == 0, done.stderr[-3000:]
    assert "already exist" in done.stderr, "the replay never met a leftover object"
    assert f"caught up: {EVENTS - before}/{EVENTS - before} records" in done.stderr

    objects = s3.files(BUCKET, prefix)
    ids = check_routed(objects, prefix)
    assert set(ids) == {f"evt-{n:06d}" for n in range(EVENTS)}, "events missing"
    assert [i for i, c in ids.items() if c > 1] == [], "events stored twice"
    sizes = sorted(len(body) for body in objects.values())
    assert sizes[-1] <= CAP, f"an object of {sizes[-1]} bytes is over S3_OBJECT_MAX_BYTES"
    paths = {key.rsplit("/", 1)[0] for key in objects}
    assert len(paths) == ACCOUNTS * DAYS
    assert done.stderr.count("uploaded s3://") >= len(objects) - len(left)
    table = consumer_group_offsets(kafka.bootstrap, topic)
    assert {p: c for (t, p), (c, _) in table.items() if t == topic} == ends
    print(
        f"\nrouted: {EVENTS} events, {len(objects)} objects in {len(paths)} paths, "
        f"sizes min {sizes[0]} median {statistics.median(sizes):.0f} max {sizes[-1]} "
        f"(cap {CAP}), {sum(s > CAP * 3 // 4 for s in sizes)} over 3/4 of the cap, "
        f"{sum(sizes)} bytes; killed after {restart - started:.1f} s with "
        f"{before} committed and {len(left)} objects stored; restart caught up "
        f"{EVENTS - before} records in {finished - restart:.1f} s"
    )


@pytest.mark.parametrize(
    "template",
    [
        "account={value.account_id}/{topic}-{partition}-{first_offset}-{last_offset",
        "account={value.account_id}/{topic}-{partition}-{first_offset}-{last_offset}/{colour}",
    ],
)
@pytest.mark.parametrize("command", ["check", "run"])
def test_a_bad_template_is_a_config_error(template: str, command: str) -> None:
    env = connector_env(
        CONNECTOR_NAME="audit",
        TOPICS="audit.v1",
        TOPIC_SCHEMAS="audit.v1=audit.v1.AuditEvent",
        PROTO_DESCRIPTOR_SET=str(EXAMPLE / "audit.binpb"),
        KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1",  # nothing listens: nothing may connect first
        WRITER="s3",
        S3_BUCKET="audit-logs",
        S3_KEY_TEMPLATE=template,
    )
    done = run_connector(command, env=env, timeout=60)
    assert done.returncode == 2, done.stderr
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("config error:")]
    assert line.startswith("config error: S3_KEY_TEMPLATE="), line

"""The dead-letter topic on a cluster that creates no topic by itself, as production runs:

- missing, with `ON_ERROR=dlq`: the connector stops at start, before reading anything, with
  one line naming `DLQ_TOPIC` and how to create it; nothing committed, nothing stored;
- missing, with `DLQ_CREATE=true`: created at start with `DLQ_PARTITIONS`, and poison goes
  there;
- SIGTERM while it is being created: exit 0, no traceback;
- a poison record near the broker's size limit: dead-lettered, its value cut to fit and the
  cut said in `dlq.truncated`, its original position kept.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from harness.kafka import KafkaBroker, create_topic, list_topics_async, run_sync
from harness.kcat import end_offsets, produce
from harness.samples import zone_events
from tests.conftest import EDGE_DESCRIPTORS, run_connector
from tests.hostile.test_kafka_input import (
    Background,
    background,  # noqa: F401 - the fixture
    committed,
    fatal_lines,
    raw_env,
    stored,
)
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

POISON = b"\xff\xff\xff\xff"
#: Kafka's default max.message.bytes is 1,048,588: this record and its batch fit, just.
NEAR_LIMIT = 1_048_500


def typed_env(kafka: KafkaBroker, name: str, topic: str, kv: Path, **extra: str) -> dict[str, str]:
    """Zone events expected on `topic`: POISON fails to decode, so it is dead-lettered."""
    return raw_env(
        kafka, name, topic, kv,
        TOPIC_SCHEMAS=f"{topic}=edge.v1.ZoneSettingsChanged",
        PROTO_DESCRIPTOR_SET=str(EDGE_DESCRIPTORS),
        **extra,
    )  # fmt: skip


def topics(kafka: KafkaBroker) -> set[str]:
    return run_sync(lambda: list_topics_async(kafka.bootstrap), 30)


async def _partitions(bootstrap: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described: Any = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sum(len(t["partitions"]) for t in described if t["topic"] == topic)


async def _read_all(bootstrap: str, topic: str, count: int) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    got: list[Any] = []
    try:
        deadline = time.monotonic() + 60
        while len(got) < count and time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=200)).values():
                got.extend(messages)
    finally:
        await consumer.stop()
    return got


def _loaded(kafka: KafkaBroker, topic: str) -> list[Any]:
    """`topic` with 5 zone events and one poison record after the third; the events."""
    create_topic(kafka.bootstrap, topic, partitions=1)
    events = list(zone_events(5, partitions=1))
    rows = [(0, e.key, e.value) for e in events]
    produce(kafka.bootstrap, topic, [*rows[:3], (0, b"poison", POISON), *rows[3:]])
    return events


def test_a_missing_dead_letter_topic_stops_the_connector_at_start_saying_how_to_create_it(
    kafka: KafkaBroker, unique: str, tmp_path: Path
) -> None:
    topic, name = f"nodlq-{unique}", f"nodlq-{unique}"
    _loaded(kafka, topic)
    env = typed_env(kafka, name, topic, tmp_path / "kv", DLQ_CREATE="false")
    started = time.monotonic()
    done = run_connector("run", "--until-caught-up", env=env, timeout=120)
    took = time.monotonic() - started

    assert done.returncode == 1, done.stderr
    assert fatal_lines(done.stderr) == [
        f"fatal: dead-letter topic '{name}.dlq' (DLQ_TOPIC) does not exist, and ON_ERROR=dlq "
        f"needs it: create it (kafka-topics.sh --bootstrap-server {kafka.bootstrap} --create "
        f"--topic {name}.dlq --partitions 1) or set DLQ_CREATE=true to have the connector "
        "create it (DLQ_PARTITIONS, DLQ_REPLICATION_FACTOR)"
    ]
    assert took < 20, f"{took:.0f}s: the check must not wait for the topic"
    assert "not found in cluster metadata" not in done.stderr
    assert "Traceback" not in done.stderr
    assert committed(kafka.bootstrap, name) == {}
    assert stored(tmp_path / "kv") == {}
    assert f"{name}.dlq" not in topics(kafka)


def test_dlq_create_creates_the_topic_at_start_and_poison_goes_there(
    kafka: KafkaBroker, unique: str, tmp_path: Path
) -> None:
    topic, name, dlq = f"mkdlq-{unique}", f"mkdlq-{unique}", f"letters-{unique}"
    events = _loaded(kafka, topic)
    env = typed_env(
        kafka, name, topic, tmp_path / "kv",
        DLQ_CREATE="true", DLQ_TOPIC=dlq, DLQ_PARTITIONS="3", DLQ_REPLICATION_FACTOR="1",
    )  # fmt: skip
    done = run_connector("run", "--until-caught-up", env=env)

    assert done.returncode == 0, done.stderr
    assert (
        f"creating dead-letter topic '{dlq}' (DLQ_CREATE=true): 3 partitions, replication 1"
        in done.stderr
    )
    assert run_sync(lambda: _partitions(kafka.bootstrap, dlq), 30) == 3
    letters = run_sync(lambda: _read_all(kafka.bootstrap, dlq, 1), 90)
    assert [(m.key, m.value) for m in letters] == [(b"poison", POISON)]
    headers = dict(letters[0].headers)
    assert headers["dlq.original.topic"] == topic.encode()
    assert headers["dlq.original.offset"] == b"3"
    assert headers["dlq.stage"] == b"decode"
    assert stored(tmp_path / "kv") == {e.key: e.value for e in events}
    assert committed(kafka.bootstrap, name) == {(topic, 0): 6}

    # Created once: the next start finds it and says nothing of creating it.
    again = run_connector("run", "--until-caught-up", env=env)
    assert again.returncode == 0, again.stderr
    assert "creating dead-letter topic" not in again.stderr


def test_sigterm_while_the_dead_letter_topic_is_created_exits_0_without_a_traceback(
    kafka: KafkaBroker,
    unique: str,
    tmp_path: Path,
    background: list[Background],  # noqa: F811
) -> None:
    topic, name = f"termdlq-{unique}", f"termdlq-{unique}"
    _loaded(kafka, topic)
    running = Background(typed_env(kafka, name, topic, tmp_path / "kv", DLQ_CREATE="true"))
    background.append(running)
    wait_for(
        lambda: running.saw(f"creating dead-letter topic '{name}.dlq'"),
        timeout=30,
        what="the dead-letter topic being created",
    )
    assert running.stop(timeout=40) == 0, running.stderr
    assert "Traceback" not in running.stderr
    assert not fatal_lines(running.stderr)
    found = committed(kafka.bootstrap, name).get((topic, 0))
    assert found in (None, 6), "a batch is committed whole or not at all"


async def _produce_large(bootstrap: str, topic: str, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=2_000_000)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value=value, key=b"big", partition=0)
    finally:
        await producer.stop()


def test_a_poison_record_near_the_size_limit_is_dead_lettered_cut_to_fit(
    kafka: KafkaBroker, unique: str, tmp_path: Path
) -> None:
    topic, name = f"bigdlq-{unique}", f"bigdlq-{unique}"
    create_topic(kafka.bootstrap, topic, partitions=1)
    big = POISON * (NEAR_LIMIT // len(POISON))
    run_sync(lambda: _produce_large(kafka.bootstrap, topic, big), 60)
    event = next(iter(zone_events(1, partitions=1)))
    produce(kafka.bootstrap, topic, [(0, event.key, event.value)])
    env = typed_env(kafka, name, topic, tmp_path / "kv", DLQ_CREATE="true")

    done = run_connector("run", "--until-caught-up", env=env)
    assert done.returncode == 0, done.stderr
    letters = run_sync(lambda: _read_all(kafka.bootstrap, f"{name}.dlq", 1), 90)
    assert len(letters) == 1
    letter = letters[0]
    headers = dict(letter.headers)
    assert letter.key == b"big"
    assert headers["dlq.truncated"] == str(NEAR_LIMIT).encode()
    assert 0 < len(letter.value) < NEAR_LIMIT
    assert big.startswith(letter.value)
    assert headers["dlq.original.topic"] == topic.encode()
    assert headers["dlq.original.partition"] == b"0"
    assert headers["dlq.original.offset"] == b"0"
    assert stored(tmp_path / "kv") == {event.key: event.value}
    assert committed(kafka.bootstrap, name) == {(topic, 0): 2}
    assert end_offsets(kafka.bootstrap, f"{name}.dlq", [0]) == {0: 1}

"""The failure contract on a real broker: dead letters, outages, ON_ERROR=fail, the breaker,
fatal errors, and the dead-letter replay round trip."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from google.protobuf.json_format import MessageToJson

from harness.kafka import KafkaBroker, consumer_group_offsets, create_topic
from harness.samples import SampleEvent, zone_events
from tests.conftest import EDGE_DESCRIPTORS, ROOT, connector_command, connector_env, run_connector
from tests.integration.test_runner_kafka import expected_store, read_lmdb
from tests.waiting import wait_for

Row = tuple[int, bytes, bytes, list[tuple[str, bytes]]]
WRONG_TYPE = [("content-type", b"application/x-protobuf; messageType=edge.v1.EdgeZoneConfig")]


def send(bootstrap: str, topic: str, rows: list[Row]) -> None:
    async def go() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        await producer.start()
        try:
            futures = [
                await producer.send(topic, value=v, key=k, partition=p, headers=h)
                for p, k, v, h in rows
            ]
            for future in futures:
                await future
        finally:
            await producer.stop()

    asyncio.run(go())


def consume_all(bootstrap: str, topic: str, expected: int) -> list[Any]:
    async def go() -> list[Any]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
        )
        await consumer.start()
        got: list[Any] = []
        try:
            deadline = time.monotonic() + 60
            while len(got) < expected and time.monotonic() < deadline:
                for messages in (await consumer.getmany(timeout_ms=200)).values():
                    got.extend(messages)
            # Anything beyond `expected` would arrive with it; read a little more to be sure.
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                got.extend(messages)
        finally:
            await consumer.stop()
        return got

    return asyncio.run(go())


def poisoned(
    count: int, seed: int = 3
) -> tuple[list[Row], list[SampleEvent], set[tuple[int, str]]]:
    """`count` events with 1% of each poison kind; returns rows, the good events in order,
    and (partition, kind) of each poison row by its position within its partition."""
    rows: list[Row] = []
    good: list[SampleEvent] = []
    poison: set[tuple[int, str]] = set()
    for i, event in enumerate(zone_events(count, seed=seed)):
        kind = i % 100
        if kind == 0:
            rows.append((event.partition, event.key, b"\xff\xff\xff\xff", []))
            poison.add((i, "decode"))
        elif kind == 1:
            rows.append((event.partition, event.key, event.value, WRONG_TYPE))
            poison.add((i, "contract"))
        elif kind == 2:
            event.message.zone_name = f"poison-{i}"
            rows.append((event.partition, event.key, event.value, []))
            poison.add((i, "transform:strict"))
        else:
            rows.append((event.partition, event.key, event.value, []))
            good.append(event)
    return rows, good, poison


def env_for(
    kafka: KafkaBroker, topic: str, group: str, store: Path, **extra: str
) -> dict[str, str]:
    settings = {
        "CONNECTOR_NAME": group,
        "TOPICS": topic,
        "TOPIC_SCHEMAS": f"{topic}=edge.v1.ZoneSettingsChanged",
        "PROTO_DESCRIPTOR_SET": str(EDGE_DESCRIPTORS),
        "TRANSFORM_MODULES": "tests.fixtures.strict",
        "TRANSFORMS": "strict,pf_edge",
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
        "KV_URL": f"lmdb:{store}",
        "KV_SYNC": "false",
        "BATCH_MAX_MESSAGES": "200",
        "RETRY_INITIAL_MS": "100",
        "RETRY_MAX_MS": "1000",
        "PYTHONPATH": str(ROOT),
    }
    return connector_env(**{**settings, **extra})


def committed(kafka: KafkaBroker, group: str, topic: str) -> dict[int, int | None]:
    return {
        p: c
        for (t, p), (c, _) in consumer_group_offsets(kafka.bootstrap, group).items()
        if t == topic
    }


def end_offsets(kafka: KafkaBroker, topic: str) -> dict[int, int]:
    from harness.kcat import end_offsets as ends

    return dict(ends(kafka.bootstrap, topic, [0, 1, 2]))


@pytest.fixture(scope="module")
def poison_topic(
    kafka: KafkaBroker,
) -> tuple[str, list[Row], list[SampleEvent], set[tuple[int, str]]]:
    topic = "poison-10k"
    create_topic(kafka.bootstrap, topic, partitions=3)
    rows, good, poison = poisoned(10_000)
    send(kafka.bootstrap, topic, rows)
    return topic, rows, good, poison


def test_each_poison_kind_is_dead_lettered_with_its_headers(
    kafka: KafkaBroker, poison_topic: Any, unique: str, tmp_path: Path
) -> None:
    topic, rows, good, poison = poison_topic
    group = f"dlq-{unique}"
    done = run_connector(
        "run", "--until-caught-up", env=env_for(kafka, topic, group, tmp_path / "kv")
    )
    assert done.returncode == 0, done.stderr[-3000:]

    assert read_lmdb(tmp_path / "kv") == expected_store(good)
    assert committed(kafka, group, topic) == end_offsets(kafka, topic)

    letters = consume_all(kafka.bootstrap, f"{group}.dlq", len(poison))
    assert len(letters) == len(poison) == 300
    stages: dict[str, int] = {}
    for letter in letters:
        headers = dict(letter.headers)
        assert headers["dlq.original.topic"] == topic.encode()
        assert headers["dlq.connector"] == group.encode()
        assert {"dlq.error.class", "dlq.error.message", "dlq.original.timestamp"} <= headers.keys()
        partition = int(headers["dlq.original.partition"])
        offset = int(headers["dlq.original.offset"])
        stage = headers["dlq.stage"].decode()
        stages[stage] = stages.get(stage, 0) + 1
        original = [r for r in rows if r[0] == partition][offset]
        assert (letter.key, letter.value) == (original[1], original[2])
        if stage == "contract":
            assert headers["content-type"] == WRONG_TYPE[0][1]
    assert stages == {"decode": 100, "contract": 100, "transform:strict": 100}


def test_writer_outage_commits_nothing_then_delivers_everything_without_rebalance(
    kafka: KafkaBroker, unique: str, tmp_path: Path
) -> None:
    topic = f"outage-{unique}"
    create_topic(kafka.bootstrap, topic, partitions=3)
    events = list(zone_events(10_000, seed=5))
    send(kafka.bootstrap, topic, [(e.partition, e.key, e.value, []) for e in events])
    flaky = tmp_path / "flaky"
    flaky.mkdir()
    (flaky / "down").touch()
    group = f"outage-{unique}"
    env = env_for(
        kafka, topic, group, tmp_path / "kv",
        WRITER="flaky_kv", TRANSFORMS="pf_edge", FLAKY_DIR=str(flaky), FLAKY_OFFSET="1500",
    )  # fmt: skip
    process = subprocess.Popen(
        connector_command("run", "--until-caught-up"),
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: (flaky / "failures").exists(), timeout=60, what="the outage to start")
        started = time.monotonic()
        during = committed(kafka, group, topic)
        wait_for(
            lambda: time.monotonic() - started >= 20 and int((flaky / "failures").read_text()) >= 5,
            timeout=60,
            what="20 s of outage",
        )
        after_20s = committed(kafka, group, topic)
        (flaky / "down").unlink()
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err[-3000:]
    assert during == after_20s, "nothing may be committed during the outage"
    assert sum(c or 0 for c in during.values()) < 10_000
    assert err.count("assigned [") == 1, "the group must not rebalance during the outage"
    assert read_lmdb(tmp_path / "kv") == expected_store(events)
    assert committed(kafka, group, topic) == end_offsets(kafka, topic)


def test_on_error_fail_stops_and_a_restart_resumes_without_loss(
    kafka: KafkaBroker, poison_topic: Any, unique: str, tmp_path: Path
) -> None:
    topic, rows, good, poison = poison_topic
    group = f"fail-{unique}"
    store = tmp_path / "kv"
    stopped = run_connector(
        "run", "--until-caught-up", env=env_for(kafka, topic, group, store, ON_ERROR="fail")
    )
    assert stopped.returncode == 1
    assert "ON_ERROR=fail" in stopped.stderr and "nothing committed past it" in stopped.stderr
    at_stop = committed(kafka, group, topic)
    first_poison = {
        p: [r for r in rows if r[0] == p].index(
            next(
                r
                for r in rows
                if r[0] == p and (r[2] == b"\xff\xff\xff\xff" or r[3] or b"poison" in r[2])
            )
        )
        for p in range(3)
    }  # noqa: E501
    for p, offset in at_stop.items():
        assert (offset or 0) <= first_poison[p]

    resumed = run_connector("run", "--until-caught-up", env=env_for(kafka, topic, group, store))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert read_lmdb(store) == expected_store(good)
    assert committed(kafka, group, topic) == end_offsets(kafka, topic)


def test_breaker_stops_a_flood_of_poison_and_a_restart_resumes(
    kafka: KafkaBroker, unique: str, tmp_path: Path
) -> None:
    topic = f"flood-{unique}"
    create_topic(kafka.bootstrap, topic, partitions=1)
    events = list(zone_events(1000, partitions=1, seed=9))
    rows: list[Row] = [
        (0, e.key, b"\xff\xff\xff\xff" if i >= 500 and i % 2 else e.value, [])
        for i, e in enumerate(events)
    ]
    send(kafka.bootstrap, topic, rows)
    group = f"flood-{unique}"
    store = tmp_path / "kv"
    env = env_for(
        kafka, topic, group, store, TRANSFORMS="pf_edge", DLQ_MAX_RATIO="0.2", DLQ_WINDOW="100"
    )
    tripped = run_connector("run", "--until-caught-up", env=env)
    assert tripped.returncode == 1
    assert "more than 20% of the last 100 records are poison" in tripped.stderr
    assert (committed(kafka, group, topic).get(0) or 0) <= 600

    env["DLQ_MAX_RATIO"] = "1"
    resumed = run_connector("run", "--until-caught-up", env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    good = [e for i, e in enumerate(events) if not (i >= 500 and i % 2)]
    assert read_lmdb(store) == expected_store(good)
    assert len(consume_all(kafka.bootstrap, f"{group}.dlq", 250)) == 250


def test_fatal_writer_error_stops_uncommitted_and_a_restart_resumes(
    kafka: KafkaBroker, unique: str, tmp_path: Path
) -> None:
    topic = f"fatal-{unique}"
    create_topic(kafka.bootstrap, topic, partitions=3)
    events = list(zone_events(3000, seed=13))
    send(kafka.bootstrap, topic, [(e.partition, e.key, e.value, []) for e in events])
    flaky = tmp_path / "flaky"
    flaky.mkdir()
    (flaky / "down").touch()
    (flaky / "fatal").touch()
    group = f"fatal-{unique}"
    env = env_for(
        kafka, topic, group, tmp_path / "kv",
        WRITER="flaky_kv", TRANSFORMS="pf_edge", FLAKY_DIR=str(flaky), FLAKY_OFFSET="300",
    )  # fmt: skip
    stopped = run_connector("run", "--until-caught-up", env=env)
    assert stopped.returncode == 1
    assert "fatal: flaky_kv: credentials revoked" in stopped.stderr
    assert (committed(kafka, group, topic).get(0) or 0) <= 300

    (flaky / "down").unlink()
    resumed = run_connector("run", "--until-caught-up", env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert read_lmdb(tmp_path / "kv") == expected_store(events)


def test_dead_letter_replay_round_trip_and_produce(
    kafka: KafkaBroker, unique: str, tmp_path: Path
) -> None:
    topic = f"replay-{unique}"
    create_topic(kafka.bootstrap, topic, partitions=1)
    events = list(zone_events(330, partitions=1, zones=1000, seed=17))
    lines = []
    for i, e in enumerate(events):
        if i % 11 == 0:
            e.message.zone_name = f"poison-{i}"
        lines.append(MessageToJson(e.message, indent=None))
    good = [e for i, e in enumerate(events) if i % 11]
    group = f"replay-{unique}"
    store = tmp_path / "kv"
    env = env_for(kafka, topic, group, store)
    produced = subprocess.run(
        connector_command("produce", topic, "--key-field", "zoneId"),
        input="\n".join(lines) + "\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert produced.returncode == 0, produced.stderr
    assert f"produced 330 edge.v1.ZoneSettingsChanged records to {topic}" in produced.stderr

    first = run_connector("run", "--until-caught-up", env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert read_lmdb(store) == expected_store(good)

    # The cause is fixed (the strict transform is dropped); the dead letters go back.
    fixed = {**env, "TRANSFORMS": "pf_edge"}
    replayed = run_connector("dlq", "replay", env=fixed)
    assert replayed.returncode == 0, replayed.stderr
    assert f"replayed 30 dead letters from {group}.dlq" in replayed.stderr
    again = run_connector("dlq", "replay", env=fixed)
    assert "replayed 0 dead letters" in again.stderr, "a finished replay is not repeated"

    second = run_connector("run", "--until-caught-up", env=fixed)
    assert second.returncode == 0, second.stderr[-3000:]
    # Replayed letters keep their original position: each lands where it was first read, so
    # a letter older than a later value of its key never overwrites that value.
    for i, event in enumerate(events):
        if i % 11 == 0:
            event.message.zone_name = event.message.zone_name.replace("poison-", "fixed-")
    assert read_lmdb(store) == expected_store(events)


def test_bad_json_line_is_refused_before_anything_is_sent(
    kafka: KafkaBroker, unique: str, tmp_path: Path
) -> None:
    topic = f"produce-{unique}"
    env = env_for(kafka, topic, f"p-{unique}", tmp_path / "kv")
    result = subprocess.run(
        connector_command("produce", topic),
        input='{"zoneId": "z1"}\n{"zoneId": 5, "nosuchfield": 1}\n',
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "line 2: not a edge.v1.ZoneSettingsChanged" in result.stderr

"""The runner end to end on a real broker: kcat → Kafka → protobuf → pf_edge → LMDB/Redis.

Input is produced by kcat (an independent librdkafka client); committed offsets are read
back with Kafka's own ConsumerGroupCommand.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from connectors import Delete, Put, Record, TransformContext
from harness.kafka import KafkaBroker, consumer_group_offsets
from harness.kcat import produce
from harness.samples import SampleEvent, zone_events
from tests.conftest import (
    EDGE_DESCRIPTORS,
    ROOT,
    connector_command,
    connector_env,
    run_connector,
)
from tests.waiting import wait_for
from transforms.pf_edge import pf_edge
from writers.kv.lmdb_store import LmdbView
from writers.kv.settings import KVSettings

COUNT = 10_000


def expected_store(events: list[SampleEvent]) -> dict[bytes, bytes]:
    """What the KV must hold: pf_edge applied in partition order, computed without the runtime."""
    store: dict[bytes, bytes] = {}
    for n, event in enumerate(events):
        ctx = TransformContext.of(Record("zone-settings", event.partition, n, event.key, b""))
        out = pf_edge(event.message, ctx)
        if isinstance(out, Put):
            store[str(out.key).encode()] = out.value.SerializeToString(deterministic=True)
        elif isinstance(out, Delete):
            store.pop(str(out.key).encode(), None)
    return store


def read_lmdb(path: Path) -> dict[bytes, bytes]:
    view = LmdbView(KVSettings(url=f"lmdb:{path}"))  # type: ignore[call-arg]
    try:
        return dict(view.items())
    finally:
        view.close()


@pytest.fixture(scope="module")
def events() -> list[SampleEvent]:
    return list(zone_events(COUNT))


@pytest.fixture
def loaded_topic(kafka: KafkaBroker, topic: str, events: list[SampleEvent]) -> dict[int, int]:
    """`topic` holding the 10,000 events; returns the end offset per partition."""
    ends = produce(kafka.bootstrap, topic, [(e.partition, e.key, e.value) for e in events])
    assert sum(ends.values()) == COUNT
    return ends


def edge_env(
    kafka: KafkaBroker, topic: str, group: str, store: Path, **extra: str
) -> dict[str, str]:
    settings = {
        "CONNECTOR_NAME": group,
        "TOPICS": topic,
        "TOPIC_SCHEMAS": f"{topic}=edge.v1.ZoneSettingsChanged",
        "PROTO_DESCRIPTOR_SET": str(EDGE_DESCRIPTORS),
        "TRANSFORMS": "pf_edge",
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
        "KV_URL": f"lmdb:{store}",
        "KV_SYNC": "false",
        "BATCH_MAX_MESSAGES": "250",
        "BATCH_MAX_WAIT_MS": "200",
        "PYTHONPATH": str(ROOT),
    }
    return connector_env(**{**settings, **extra})


def committed(kafka: KafkaBroker, group: str, topic: str) -> dict[int, int | None]:
    table = consumer_group_offsets(kafka.bootstrap, group)
    return {p: c for (t, p), (c, _end) in table.items() if t == topic}


def test_10k_messages_reach_the_kv_and_offsets_are_committed(
    kafka: KafkaBroker,
    topic: str,
    loaded_topic: dict[int, int],
    events: list[SampleEvent],
    unique: str,
    tmp_path: Path,
) -> None:
    group = f"edge-{unique}"
    env = edge_env(kafka, topic, group, tmp_path / "kv")
    done = run_connector("run", "--until-caught-up", env=env)
    assert done.returncode == 0, done.stderr
    assert "caught up: 10000/10000 records" in done.stderr

    assert read_lmdb(tmp_path / "kv") == expected_store(events)
    assert committed(kafka, group, topic) == loaded_topic

    dump = run_connector("kv", "dump", "--limit", "3", env=env)
    rows = [json.loads(line) for line in dump.stdout.splitlines()]
    assert dump.returncode == 0 and len(rows) == 3
    assert all(row["key"].startswith("zone:") and row["value_b64"] for row in rows)


def test_kill_9_mid_run_then_restart_equals_an_uninterrupted_run(
    kafka: KafkaBroker,
    topic: str,
    loaded_topic: dict[int, int],
    events: list[SampleEvent],
    unique: str,
    tmp_path: Path,
) -> None:
    gate_dir = tmp_path / "gate"
    gate_dir.mkdir()
    group = f"crash-{unique}"
    store = tmp_path / "kv-crash"
    gated = edge_env(
        kafka,
        topic,
        group,
        store,
        TRANSFORM_MODULES="tests.fixtures.gate",
        TRANSFORMS="gate,pf_edge",
        GATE_DIR=str(gate_dir),
        GATE_PARTITION="1",
        GATE_OFFSET=str(loaded_topic[1] // 2),
    )
    process = subprocess.Popen(
        connector_command("run", "--until-caught-up"),
        env=gated,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: (gate_dir / "reached").exists(), timeout=60, what="the gate")
        before = committed(kafka, group, topic)
        process.kill()
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)
    assert process.returncode == -signal.SIGKILL
    assert before.get(1) is not None and before[1] <= loaded_topic[1] // 2
    assert sum(c or 0 for c in before.values()) < COUNT, "the kill must land mid-run"

    restarted = run_connector("run", "--until-caught-up", env=edge_env(kafka, topic, group, store))
    assert restarted.returncode == 0, restarted.stderr

    uninterrupted_store = tmp_path / "kv-clean"
    clean = run_connector(
        "run",
        "--until-caught-up",
        env=edge_env(kafka, topic, f"clean-{unique}", uninterrupted_store),
    )
    assert clean.returncode == 0, clean.stderr
    assert read_lmdb(store) == read_lmdb(uninterrupted_store) == expected_store(events)
    assert committed(kafka, group, topic) == loaded_topic


def test_sigterm_exits_0_and_commits_only_what_was_written(
    kafka: KafkaBroker, unique: str, tmp_path: Path
) -> None:
    raw_topic = f"raw-{unique}"
    rows = [
        (p, f"{p}-{o}".encode(), f"value-{p}-{o}".encode()) for p in range(3) for o in range(2000)
    ]
    from harness.kafka import create_topic

    create_topic(kafka.bootstrap, raw_topic, partitions=3)
    ends = produce(kafka.bootstrap, raw_topic, rows)
    gate_dir = tmp_path / "gate"
    gate_dir.mkdir()
    group = f"term-{unique}"
    store = tmp_path / "kv"
    env = connector_env(
        CONNECTOR_NAME=group,
        TOPICS=raw_topic,
        TOPIC_SCHEMAS=f"{raw_topic}=bytes",
        TRANSFORM_MODULES="tests.fixtures.gate",
        TRANSFORMS="gate",
        KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap,
        KV_URL=f"lmdb:{store}",
        KV_SYNC="false",
        BATCH_MAX_MESSAGES="100",
        PYTHONPATH=str(ROOT),
        GATE_DIR=str(gate_dir),
        GATE_PARTITION="0",
        GATE_OFFSET="1000",
    )
    process = subprocess.Popen(
        connector_command("run"),
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: (gate_dir / "reached").exists(), timeout=60, what="the gate")
        process.send_signal(signal.SIGTERM)
        (gate_dir / "open").touch()
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    offsets = committed(kafka, group, raw_topic)
    written = read_lmdb(store)
    assert offsets.get(0) is not None and 1000 < offsets[0] < ends[0], offsets
    for partition, offset in offsets.items():
        for o in range(offset or 0):
            key = f"{partition}-{o}".encode()
            assert written.get(key) == f"value-{partition}-{o}".encode(), (
                f"offset {o} of partition {partition} committed but not written"
            )


def test_redis_backend_end_to_end(
    kafka: KafkaBroker, redis_server: Any, unique: str, tmp_path: Path
) -> None:
    from harness.kafka import create_topic

    topic = f"zones-{unique}"
    create_topic(kafka.bootstrap, topic, partitions=3)
    events = list(zone_events(2000, seed=11))
    ends = produce(kafka.bootstrap, topic, [(e.partition, e.key, e.value) for e in events])
    env = edge_env(kafka, topic, f"redis-{unique}", tmp_path / "unused")
    env["KV_URL"] = redis_server.url
    env["KV_KEY_PREFIX"] = f"{unique}/"
    done = run_connector("run", "--until-caught-up", env=env)
    assert done.returncode == 0, done.stderr
    dump = run_connector("kv", "dump", env=env)
    got = {
        row["key"].encode(): __import__("base64").b64decode(row["value_b64"])
        for row in map(json.loads, dump.stdout.splitlines())
    }
    assert got == expected_store(events)
    assert committed(kafka, f"redis-{unique}", topic) == ends

"""`WORKERS=N` on a real broker: N members of the group in N processes behind one port.

Input is produced by kcat; committed offsets are read back with Kafka's own
ConsumerGroupCommand; the group's members with an admin client; the pod's `/healthz` and
`/metrics` from the parent's METRICS_PORT.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families

from harness.kafka import KafkaBroker, create_topic, run_sync
from harness.kcat import produce
from harness.ports import free_port
from harness.samples import SampleEvent, zone_events
from tests.conftest import ROOT, connector_command, connector_env, run_connector
from tests.integration.test_runner_kafka import committed, edge_env, expected_store, read_lmdb
from tests.waiting import wait_for

COUNT = 12_000
PARTITIONS = 6


@pytest.fixture(scope="module")
def events() -> list[SampleEvent]:
    return list(zone_events(COUNT, partitions=PARTITIONS))


@pytest.fixture
def six(kafka: KafkaBroker, unique: str, events: list[SampleEvent]) -> tuple[str, dict[int, int]]:
    """A 6-partition topic holding the events; its name and end offset per partition."""
    name = f"six-{unique}"
    create_topic(kafka.bootstrap, name, partitions=PARTITIONS)
    ends = produce(kafka.bootstrap, name, [(e.partition, e.key, e.value) for e in events])
    assert sum(ends.values()) == COUNT and len(ends) == PARTITIONS
    return name, ends


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def healthz(port: int) -> dict[str, Any]:
    status, text = get(port, "/healthz")
    return json.loads(text) if status else {}


def counter(port: int, name: str) -> float:
    _, text = get(port, "/metrics")
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    )


def members(kafka: KafkaBroker, group: str) -> list[str]:
    """The member ids of the group, as the coordinator describes them (a static member's
    is its `group.instance.id`, a dash and a UUID)."""

    async def describe() -> list[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
        await admin.start()
        try:
            groups = (await admin.describe_consumer_groups([group]))[0].to_object()["groups"]
        finally:
            await admin.close()
        return sorted(str(m["member_id"]) for m in groups[0]["members"])

    return run_sync(describe, timeout=30)


def start(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        connector_command("run", *args),
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_two_workers_split_the_partitions_behind_one_port_and_stop_on_sigterm(
    kafka: KafkaBroker,
    six: tuple[str, dict[int, int]],
    events: list[SampleEvent],
    unique: str,
    tmp_path: Path,
) -> None:
    topic, ends = six
    group, port = f"two-{unique}", free_port()
    env = edge_env(
        kafka,
        topic,
        group,
        tmp_path / "kv",
        WORKERS="2",
        METRICS_PORT=str(port),
        METRICS_HOST="127.0.0.1",
        KAFKA_GROUP_INSTANCE_ID=f"pod-{unique}",
    )
    process = start(env)
    try:

        def everything_idle() -> dict[str, Any] | None:
            body = healthz(port)
            partitions = body.get("partitions", [])
            done = len(partitions) == PARTITIONS and all(
                p["reason"] == "idle" and p["committed"] == ends[p["partition"]] for p in partitions
            )
            # A worker that joins after the other caught up gets its share at the next
            # rebalance: wait for it, rather than for the first moment all is idle.
            split = all(w["partitions"] for w in body.get("workers", []))
            return body if done and split and len(body["workers"]) == 2 else None

        body = wait_for(everything_idle, timeout=120, what="both workers holding partitions, idle")
        held = [{tuple(tp) for tp in w["partitions"]} for w in body["workers"]]
        assert all(held), f"each worker holds partitions: {body['workers']}"
        assert held[0].isdisjoint(held[1]) and len(held[0] | held[1]) == PARTITIONS
        assert body["status"] == "healthy" and get(port, "/readyz")[0] == 200
        assert get(port, "/livez")[0] == 200
        # One port, counting both workers' records: each holds only some of them.
        assert counter(port, "connector_records_in_total") == COUNT
        assert counter(port, "connector_entries_written_total") > 0
        ids = members(kafka, group)
        assert len(ids) == 2, ids
        assert ids[0].startswith(f"pod-{unique}-0-") and ids[1].startswith(f"pod-{unique}-1-")
        pids = [w["pid"] for w in body["workers"]]

        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert not any(alive(pid) for pid in pids)
    assert "SIGTERM: stopping 2 workers" in err
    assert read_lmdb(tmp_path / "kv") == expected_store(events)
    assert committed(kafka, group, topic) == ends


def test_sigterm_lets_each_worker_finish_its_batch(
    kafka: KafkaBroker, unique: str, tmp_path: Path
) -> None:
    """A worker parked in a transform when SIGTERM arrives writes and commits its batch."""
    topic = f"raw-{unique}"
    create_topic(kafka.bootstrap, topic, partitions=PARTITIONS)
    rows = [(p, f"{p}-{o}".encode(), b"v") for p in range(PARTITIONS) for o in range(2000)]
    ends = produce(kafka.bootstrap, topic, rows)
    gate_dir = tmp_path / "gate"
    gate_dir.mkdir()
    group = f"term-{unique}"
    env = connector_env(
        CONNECTOR_NAME=group,
        TOPICS=topic,
        TOPIC_SCHEMAS=f"{topic}=bytes",
        TRANSFORM_MODULES="tests.fixtures.gate",
        TRANSFORMS="gate",
        KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap,
        KV_URL=f"lmdb:{tmp_path / 'kv'}",
        KV_SYNC="false",
        BATCH_MAX_MESSAGES="100",
        PYTHONPATH=str(ROOT),
        GATE_DIR=str(gate_dir),
        GATE_PARTITION="0",
        GATE_OFFSET="1000",
        WORKERS="2",
    )
    process = start(env)
    try:
        wait_for(lambda: (gate_dir / "reached").exists(), timeout=90, what="the gate")
        process.send_signal(signal.SIGTERM)
        (gate_dir / "open").touch()
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    offsets = committed(kafka, group, topic)
    assert offsets.get(0) is not None and 1000 < offsets[0] <= ends[0], offsets
    written = read_lmdb(tmp_path / "kv")
    for partition, offset in offsets.items():
        assert all(f"{partition}-{o}".encode() in written for o in range(offset or 0))


def test_a_worker_killed_takes_the_pod_down_and_a_restart_misses_nothing(
    kafka: KafkaBroker,
    six: tuple[str, dict[int, int]],
    events: list[SampleEvent],
    unique: str,
    tmp_path: Path,
) -> None:
    topic, ends = six
    gate_dir = tmp_path / "gate"
    gate_dir.mkdir()
    group, port, store = f"crash-{unique}", free_port(), tmp_path / "kv"
    gated = edge_env(
        kafka,
        topic,
        group,
        store,
        WORKERS="2",
        METRICS_PORT=str(port),
        METRICS_HOST="127.0.0.1",
        TRANSFORM_MODULES="tests.fixtures.gate",
        TRANSFORMS="gate,pf_edge",
        GATE_DIR=str(gate_dir),
        GATE_PARTITION="1",
        GATE_OFFSET=str(ends[1] // 2),
    )
    process = start(gated)
    try:
        wait_for(lambda: (gate_dir / "reached").exists(), timeout=90, what="the gate")

        pid = int((gate_dir / "reached").read_text())  # the worker holding partition 1
        workers = wait_for(
            lambda: healthz(port).get("workers"), timeout=60, what="the pod's /healthz"
        )
        index = next(w["worker"] for w in workers if w["pid"] == pid)
        others = [w["pid"] for w in workers if w["pid"] != pid]
        os.kill(pid, signal.SIGKILL)
        _, err = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1, err
    fatal = [line for line in err.splitlines() if line.startswith("fatal:")]
    assert fatal == [
        f"fatal: worker {index} (pid {pid}) was killed by SIGKILL; the other workers were stopped"
    ], err
    assert others and not any(alive(other) for other in others)
    before = committed(kafka, group, topic)
    assert sum(c or 0 for c in before.values()) < COUNT, "the kill must land mid-run"

    restarted = run_connector(
        "run",
        "--until-caught-up",
        env=edge_env(kafka, topic, group, store, WORKERS="2"),
        timeout=180,
    )
    assert restarted.returncode == 0, restarted.stderr
    assert "every partition is caught up: stopping 2 workers" in restarted.stderr
    assert read_lmdb(store) == expected_store(events)
    assert committed(kafka, group, topic) == ends


def test_until_caught_up_ends_with_a_worker_that_holds_no_partition(
    kafka: KafkaBroker, unique: str, tmp_path: Path
) -> None:
    """Three workers, two partitions: the one left without a partition neither ends the
    run early nor keeps it from ending."""
    topic = f"few-{unique}"
    create_topic(kafka.bootstrap, topic, partitions=2)
    rows = [(p, f"{p}-{o}".encode(), b"v") for p in range(2) for o in range(3000)]
    ends = produce(kafka.bootstrap, topic, rows)
    group = f"few-{unique}"
    env = connector_env(
        CONNECTOR_NAME=group,
        TOPICS=topic,
        TOPIC_SCHEMAS=f"{topic}=bytes",
        KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap,
        KV_URL=f"lmdb:{tmp_path / 'kv'}",
        KV_SYNC="false",
        BATCH_MAX_MESSAGES="200",
        WORKERS="3",
    )
    done = run_connector("run", "--until-caught-up", env=env, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "every partition is caught up: stopping 3 workers" in done.stderr
    assert committed(kafka, group, topic) == ends
    written = read_lmdb(tmp_path / "kv")
    assert len(written) == len(rows)


@pytest.mark.parametrize("value", ["0", "65", "two", "-1"])
def test_workers_is_validated_before_anything_starts(value: str) -> None:
    env = connector_env(CONNECTOR_NAME="w", TOPICS="t", TOPIC_SCHEMAS="t=bytes", WORKERS=value)
    done = run_connector("run", env=env, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith(f"config error: WORKERS={value!r}"), done.stderr
    assert "started" not in done.stderr

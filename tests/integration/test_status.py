"""`connector status` against a group of two running connectors on the real broker.

Two `connector run` processes share a group over a 4-partition topic with a backlog; an
async transform (`tests.fixtures.hold`) holds each of them at a record in the middle, so
their committed offsets stand still (and they stay members: the loop keeps heartbeating)
while `connector status` and Kafka's own `kafka-consumer-groups --describe` look.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.kafka import KafkaBroker, consumer_group_offsets, create_topic
from harness.kcat import produce
from harness.ports import free_port
from tests.conftest import ROOT, connector_command, connector_env, run_connector
from tests.integration.test_health import http_get
from tests.waiting import wait_for

PARTITIONS, PER_PARTITION, HOLD_AT = 4, 20, 12


def status_env(kafka: KafkaBroker, name: str, topic: str, **extra: str) -> dict[str, str]:
    return connector_env(
        CONNECTOR_NAME=name,
        TOPICS=topic,
        KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap,
        **extra,
    )


@pytest.fixture
def group(kafka: KafkaBroker, unique: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Two members holding two partitions each, both held mid-backlog."""
    topic = name = f"status-{unique}"
    create_topic(kafka.bootstrap, topic, partitions=PARTITIONS)
    gate = tmp_path / "gate"
    gate.mkdir()
    ports = [free_port(), free_port()]
    members = []
    logs = [(tmp_path / f"member{n}.log").open("w") for n in range(2)]
    for n, port in enumerate(ports):
        env = status_env(
            kafka, name, topic,
            TOPIC_SCHEMAS=f"{topic}=bytes", KV_URL=f"lmdb:{tmp_path / f'kv{n}'}",
            TRANSFORM_MODULES="tests.fixtures.hold", TRANSFORMS="hold", GATE_DIR=str(gate),
            METRICS_PORT=str(port), METRICS_HOST="127.0.0.1", PYTHONPATH=str(ROOT),
            BATCH_MAX_MESSAGES="5", BATCH_MAX_WAIT_MS="100", KAFKA_SESSION_TIMEOUT_MS="10000",
        )  # fmt: skip
        members.append(
            subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
                connector_command("run"),
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=logs[n],
            )
        )
    try:

        def both_hold_two() -> bool:
            for port, member in zip(ports, members, strict=True):
                assert member.poll() is None, "a member stopped (see its log in tmp_path)"
                try:
                    status, body = http_get(f"http://127.0.0.1:{port}/readyz")
                except OSError:
                    return False
                if status != 200 or body["assigned_partitions"] != 2:
                    return False
            return True

        wait_for(both_hold_two, timeout=90, what="two members holding two partitions each")
        rows = [
            (p, f"k{p}-{o}".encode(), b"hold" if o == HOLD_AT else b"v")
            for p in range(PARTITIONS)
            for o in range(PER_PARTITION)
        ]
        produce(kafka.bootstrap, topic, rows)
        wait_for(
            lambda: len(list(gate.glob("reached-*"))) == 2,
            timeout=60,
            what="both members held at a record",
        )
        yield {"topic": topic, "name": name, "ports": ports, "members": members}
    finally:
        (gate / "open").touch()
        for member in members:
            member.terminate()
        for member in members:
            try:
                member.wait(30)
            except subprocess.TimeoutExpired:
                member.kill()
                member.wait(10)
        for log in logs:
            log.close()


def test_status_matches_kafka_consumer_groups(kafka: KafkaBroker, group: dict[str, Any]) -> None:
    topic, name, ports = group["topic"], group["name"], group["ports"]
    health = [arg for port in ports for arg in ("--health", f"http://127.0.0.1:{port}")]
    env = status_env(kafka, name, topic)
    done = run_connector("status", "--json", *health, env=env)
    kafka_says = consumer_group_offsets(kafka.bootstrap, name)
    assert done.returncode == 0, done.stdout + done.stderr
    found = json.loads(done.stdout)

    assert found["group"] == name and found["state"] == "Stable" and found["healthy"] is True
    members = found["members"]
    assert len({m["member_id"] for m in members}) == 2, members
    assert all(len(m["partitions"]) == 2 and m["health"] == "healthy" for m in members), members
    holder = {(t, p): m["member_id"] for m in members for t, p in m["partitions"]}

    rows = {(r["topic"], r["partition"]): r for r in found["partitions"]}
    assert set(rows) == {(topic, p) for p in range(PARTITIONS)} == set(kafka_says)
    for tp, row in rows.items():
        committed, log_end = kafka_says[tp]
        assert (row["committed"], row["end"]) == (committed, log_end), (tp, row, kafka_says)
        # As Kafka's tool: no lag for a partition the group never committed (its "-").
        assert row["lag"] == (None if committed is None else log_end - committed), row
        assert row["member"] == holder[tp] and row["client_id"] == name
        assert row["state"] in ("idle", "progressing"), row
    # Held mid-backlog: each member is behind somewhere, and the total matches Kafka's.
    for member in members:
        assert any(rows[(t, p)]["lag"] != 0 for t, p in member["partitions"]), (member, rows)
    assert found["lag"] == sum(end - c for c, end in kafka_says.values() if c is not None)
    assert any(row["lag"] for row in rows.values()), rows

    table = run_connector("status", *health, env=env)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith(f"group {name}: Stable, 2 members, 4 partitions, lag ")
    header = lines[2].split()
    assert header[:8] == [
        "TOPIC",
        "PARTITION",
        "MEMBER",
        "HOST",
        "COMMITTED",
        "END",
        "LAG",
        "STATE",
    ]
    for p in range(PARTITIONS):
        cells = next(line.split() for line in lines[3:7] if line.split()[:2] == [topic, str(p)])
        committed, log_end = kafka_says[(topic, p)]
        lag = "-" if committed is None else str(log_end - committed)
        assert cells[4:7] == [str(committed if committed is not None else "-"), str(log_end), lag]
    assert sum(line.startswith("member ") for line in lines) == 2


def test_members_that_do_not_answer_are_unknown_and_fail_the_exit_code(
    kafka: KafkaBroker, group: dict[str, Any]
) -> None:
    topic, name, ports = group["topic"], group["name"], group["ports"]
    dead = f"http://127.0.0.1:{free_port()}/healthz"
    env = status_env(kafka, name, topic)
    done = run_connector(
        "status", "--json", "--health", f"http://127.0.0.1:{ports[0]}", "--health", dead, env=env
    )
    assert done.returncode == 1, done.stdout + done.stderr
    found = json.loads(done.stdout)
    states = sorted(r["state"] for r in found["partitions"])
    assert states[2:] == ["unknown", "unknown"] and set(states[:2]) <= {"idle", "progressing"}
    assert sorted(m["health"] for m in found["members"]) == ["healthy", "unknown"]
    [failed] = [h for h in found["health"] if h["error"]]
    assert failed["url"] == dead and "Connection refused" in failed["error"]
    # Offsets still come from the brokers for every partition.
    assert all(r["end"] == PER_PARTITION for r in found["partitions"])

    # Without --health: each member's host at METRICS_PORT; here both share one host, so
    # only the member on that port answers for its partitions.
    derived = run_connector("status", "--json", env={**env, "METRICS_PORT": str(ports[1])})
    assert derived.returncode == 1
    urls = [h["url"] for h in json.loads(derived.stdout)["health"]]
    assert urls == [f"http://127.0.0.1:{ports[1]}/healthz"]


def test_bad_configuration_exits_2_and_an_unreachable_broker_1(unique: str) -> None:
    missing = run_connector("status", env=connector_env(CONNECTOR_NAME="c"))
    assert missing.returncode == 2 and "TOPICS" in missing.stderr
    env = connector_env(
        CONNECTOR_NAME="c", TOPICS="t", KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}"
    )
    bad_url = run_connector("status", "--health", "ftp://somewhere", env=env)
    assert bad_url.returncode == 2 and "--health" in bad_url.stderr
    down = run_connector("status", "--timeout", "3", env=env, timeout=60)
    assert down.returncode == 1 and down.stdout == "", down
    assert len(down.stderr.strip().splitlines()) == 1, down.stderr


def test_watch_reprints_until_ctrl_c_and_exits_0(kafka: KafkaBroker, unique: str) -> None:
    topic = name = f"watch-{unique}"
    create_topic(kafka.bootstrap, topic, partitions=2)
    produce(kafka.bootstrap, topic, [(1, b"k", b"v")])
    process = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
        connector_command("status", "--watch", "0.2"),
        env=status_env(kafka, name, topic),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        heads = []
        for line in process.stdout:
            if line.startswith(f"group {name}: "):
                heads.append(line)
                if len(heads) == 3:
                    break
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()  # reaped and its pipes closed, whatever failed above
    assert process.returncode == 0, err
    # Nobody consumes: no member, both partitions unassigned, the one record is lag unknown.
    assert heads[0].startswith(f"group {name}: Dead, 0 members, 2 partitions, lag 0: unhealthy")
    assert "Traceback" not in err

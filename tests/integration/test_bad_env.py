"""A bad environment exits 2 before any connection: the broker address is a listening
socket that counts connections, and must count none."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.conftest import EDGE_DESCRIPTORS, connector_env, run_connector

CASES: list[tuple[str, dict[str, str], str]] = [
    ("missing TOPICS", {"TOPICS": ""}, "TOPICS"),
    ("unknown writer", {"WRITER": "nosuch"}, "WRITER"),
    (
        "malformed TOPIC_SCHEMAS",
        {"TOPIC_SCHEMAS": "zones:edge.v1.ZoneSettingsChanged"},
        "TOPIC_SCHEMAS",
    ),
    ("type not in descriptor set", {"TOPIC_SCHEMAS": "zones=edge.v1.Missing"}, "TOPIC_SCHEMAS"),
    ("unknown transform", {"TRANSFORMS": "pf_edge,nosuch"}, "TRANSFORMS"),
    ("non-numeric batch size", {"BATCH_MAX_MESSAGES": "ten"}, "BATCH_MAX_MESSAGES"),
    ("bad KV_URL", {"KV_URL": "memcached://x"}, "KV_URL"),
    ("missing connector name", {"CONNECTOR_NAME": ""}, "CONNECTOR_NAME"),
    ("unknown reader", {"READER": "kinesis"}, "READER"),
    ("descriptor set missing", {"PROTO_DESCRIPTOR_SET": "/nope.binpb"}, "PROTO_DESCRIPTOR_SET"),
    ("bad offset reset", {"KAFKA_AUTO_OFFSET_RESET": "sometimes"}, "KAFKA_AUTO_OFFSET_RESET"),
    ("bad wait", {"BATCH_MAX_WAIT_MS": "soon"}, "BATCH_MAX_WAIT_MS"),
    ("topic pattern", {"TOPICS": "t.*", "TOPIC_SCHEMAS": "t.*=bytes"}, "TOPICS"),
    ("bootstrap port", {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:99999"}, "KAFKA_BOOTSTRAP_SERVERS"),
    ("metrics host", {"METRICS_HOST": "not a host"}, "METRICS_HOST"),
    ("retry bounds", {"RETRY_INITIAL_MS": "10000", "RETRY_MAX_MS": "1"}, "RETRY_INITIAL_MS"),
    ("lmdb store a file", {"KV_URL": f"lmdb:{__file__}"}, "KV_URL"),
]


@pytest.fixture(scope="module")
def listener() -> Iterator[socket.socket]:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.setblocking(False)
    try:
        yield server
    finally:
        server.close()


def accepted(server: socket.socket) -> int:
    count = 0
    while True:
        try:
            conn, _ = server.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


@pytest.mark.parametrize(("case", "bad", "variable"), CASES, ids=[c[0] for c in CASES])
def test_bad_env_exits_2_without_connecting(
    listener: socket.socket, case: str, bad: dict[str, str], variable: str
) -> None:
    address = f"127.0.0.1:{listener.getsockname()[1]}"
    env = connector_env(
        CONNECTOR_NAME="bad-env",
        TOPICS="zones",
        TOPIC_SCHEMAS="zones=edge.v1.ZoneSettingsChanged",
        PROTO_DESCRIPTOR_SET=str(EDGE_DESCRIPTORS),
        TRANSFORMS="pf_edge",
        KAFKA_BOOTSTRAP_SERVERS=address,
        KV_URL=f"redis://{address}/0",
    )
    env.update(bad)
    result = run_connector("run", env=env, timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"config error: {variable}" in result.stderr
    assert accepted(listener) == 0, "a bad environment must not contact any server"


def test_control_a_good_env_does_connect(listener: socket.socket) -> None:
    """Shows the counting socket would see a connection, so the zero above means something."""
    import subprocess

    from tests.conftest import connector_command
    from tests.waiting import wait_for

    address = f"127.0.0.1:{listener.getsockname()[1]}"
    env = connector_env(
        CONNECTOR_NAME="good-env",
        TOPICS="zones",
        TOPIC_SCHEMAS="zones=bytes",
        KAFKA_BOOTSTRAP_SERVERS=address,
        KV_URL="lmdb:/tmp/never-written-good-env",
    )
    process = subprocess.Popen(
        connector_command("run"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for(lambda: accepted(listener) > 0, timeout=60, what="a connection attempt")
    finally:
        process.kill()
        process.wait(timeout=10)

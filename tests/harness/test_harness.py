"""The harness itself, against real services: a Kafka 4.4 broker, kcat, Redis.

The shared ``kafka`` fixture (tests/conftest.py) is the session's broker, so names here
are unique; tests that crash or misconfigure a broker start their own.

Other integration tests trust these helpers to report what Kafka holds, so each helper
is checked here against an independent view (aiokafka reading back what kcat wrote,
Kafka's own group command reading what aiokafka committed).
"""

from __future__ import annotations

import asyncio
import random
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from harness.kafka import (
    BrokerStartError,
    KafkaBroker,
    consumer_group_offsets,
    create_topic,
    list_topics_async,
    run_sync,
)
from harness.kcat import KEY_DELIMITER, RECORD_DELIMITER, end_offsets, produce
from harness.redis import RedisServer

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

Record = tuple[int, bytes, bytes]


def _binary_records(count: int, partitions: int) -> list[Record]:
    """Values a line-based tool would mangle: every byte value, NULs, newlines, CRs,
    empty keys and values, and seeded random bytes."""
    rng = random.Random(20240607)
    specials = [
        bytes(range(256)),
        bytes(range(255, -1, -1)),
        b"\n",
        b"\x00",
        b"\r\n\r\n",
        b"",
        b"\n\x00\n\x00\xff\xfe",
        b"|#kcat:end-of-record",  # a prefix of the delimiter is still fine
    ]
    records: list[Record] = []
    for i in range(count):
        if i < len(specials):
            value = specials[i]
        else:
            value = rng.randbytes(rng.randrange(0, 600))
        key = b"" if i % 17 == 0 else f"key-{i}\n\x00".encode() + rng.randbytes(4)
        records.append((rng.randrange(partitions), key, value))
    return records


def _by_partition(records: list[Record]) -> dict[int, list[tuple[bytes, bytes]]]:
    grouped: dict[int, list[tuple[bytes, bytes]]] = {}
    for partition, key, value in records:
        grouped.setdefault(partition, []).append((key, value))
    return grouped


async def _consume_in_group(
    bootstrap: str, topic: str, group: str, ends: dict[int, int], commit: dict[int, int]
) -> tuple[dict[int, list[tuple[bytes, bytes]]], dict[tuple[str, int], tuple[int | None, int]]]:
    """Read everything as a group member, commit ``commit``, and ask Kafka's own group
    command what it sees while the member is still active."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    seen: dict[int, list[tuple[bytes, bytes]]] = {p: [] for p in ends}
    await consumer.start()
    try:
        deadline = time.monotonic() + 60.0
        while any(len(seen[p]) < ends[p] for p in ends):
            assert time.monotonic() < deadline, f"consumed only {seen.keys()} of {ends}"
            batches = await consumer.getmany(timeout_ms=500)
            for tp, messages in batches.items():
                for message in messages:
                    assert message.offset == len(seen[tp.partition])
                    assert message.key is not None and message.value is not None
                    seen[tp.partition].append((message.key, message.value))
        await consumer.commit({TopicPartition(topic, p): o for p, o in commit.items()})
        active = await asyncio.to_thread(consumer_group_offsets, bootstrap, group)
    finally:
        await consumer.stop()
    return seen, active


def test_broker_answers_admin_requests(kafka: KafkaBroker) -> None:
    name = f"admin-{uuid.uuid4().hex[:8]}"
    create_topic(kafka.bootstrap, name, 2)
    topics = run_sync(lambda: list_topics_async(kafka.bootstrap), 30.0)
    assert name in topics
    assert kafka.log_path.exists()


def test_kcat_binary_round_trip_and_group_offsets(kafka: KafkaBroker) -> None:
    suffix = uuid.uuid4().hex[:8]
    topic, group = f"binary-{suffix}", f"group-{suffix}"
    records = _binary_records(1000, 3)
    expected = _by_partition(records)
    assert set(expected) == {0, 1, 2}
    create_topic(kafka.bootstrap, topic, 3)

    ends = produce(kafka.bootstrap, topic, records)

    assert ends == {p: len(rows) for p, rows in expected.items()}
    commit = {0: ends[0], 1: ends[1] // 2}  # partition 2: nothing committed
    seen, while_active = asyncio.run(_consume_in_group(kafka.bootstrap, topic, group, ends, commit))
    assert seen == expected
    assert while_active == {
        (topic, 0): (ends[0], ends[0]),
        (topic, 1): (ends[1] // 2, ends[1]),
        (topic, 2): (None, ends[2]),
    }
    after = consumer_group_offsets(kafka.bootstrap, group)
    assert after[(topic, 0)] == (ends[0], ends[0])
    assert after[(topic, 1)] == (ends[1] // 2, ends[1])
    assert after.get((topic, 2), (None, ends[2])) == (None, ends[2])
    assert consumer_group_offsets(kafka.bootstrap, f"no-such-group-{suffix}") == {}


def test_kcat_appends_after_existing_records(kafka: KafkaBroker) -> None:
    name = f"appends-{uuid.uuid4().hex[:8]}"
    create_topic(kafka.bootstrap, name, 1)
    assert produce(kafka.bootstrap, name, [(0, b"a", b"\x00")]) == {0: 1}
    assert produce(kafka.bootstrap, name, [(0, b"b", b"\n")] * 3) == {0: 4}


def test_kcat_refuses_records_it_would_split() -> None:
    unreachable = "127.0.0.1:9"  # validation happens before any connection
    with pytest.raises(ValueError, match="record delimiter"):
        produce(unreachable, "t", [(0, b"k", b"x" + RECORD_DELIMITER + b"y")])
    with pytest.raises(ValueError, match="record delimiter"):
        produce(unreachable, "t", [(0, RECORD_DELIMITER, b"v")])
    with pytest.raises(ValueError, match="key delimiter"):
        produce(unreachable, "t", [(0, b"a" + KEY_DELIMITER, b"v")])


def test_broker_survives_pause_kill_and_restart(tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path / "kafka")
    try:
        broker.start()
        create_topic(broker.bootstrap, "durable", 1)
        produce(broker.bootstrap, "durable", [(0, b"k", bytes([i])) for i in range(10)])
        address = broker.bootstrap
        broker.pause()
        with pytest.raises((TimeoutError, KafkaError)):
            run_sync(lambda: list_topics_async(address, request_timeout=1.0), 3.0)
        broker.resume()
        run_sync(lambda: list_topics_async(address), 30.0)
        broker.kill()
        assert not broker.is_running()
        broker.start()
        assert broker.bootstrap == address
        assert end_offsets(broker.bootstrap, "durable", [0]) == {0: 10}
    finally:
        broker.stop()
    assert not broker.is_running()


def test_failed_start_reports_the_broker_log(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        broker = KafkaBroker(tmp_path / "kafka", port=taken.getsockname()[1], start_timeout=60)
        with pytest.raises(BrokerStartError, match="Address already in use"):
            broker.start()
    assert not broker.is_running()


def _alive(pid: int) -> bool:
    """A stopped broker may linger as a zombie until init reaps it; that is not alive."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.kafka", *args],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_cli_starts_detached_and_stops(tmp_path: Path) -> None:
    directory = tmp_path / "cli"
    try:
        first = _cli("start", "--dir", str(directory))
        assert first.returncode == 0, first.stderr
        bootstrap = first.stdout.strip()
        assert bootstrap == (directory / "bootstrap").read_text().strip()
        pid = int((directory / "broker.pid").read_text())
        again = _cli("start", "--dir", str(directory))
        assert again.returncode == 0, again.stderr
        assert again.stdout.strip() == bootstrap
        assert int((directory / "broker.pid").read_text()) == pid
        run_sync(lambda: list_topics_async(bootstrap), 30.0)
    finally:
        stopped = _cli("stop", "--dir", str(directory))
    assert stopped.returncode == 0, stopped.stderr
    assert not _alive(pid)


def test_redis_server_answers() -> None:
    with RedisServer() as server, redis.Redis.from_url(server.url) as client:
        assert client.ping() is True
        client.set(b"key", b"\x00\xff\n")
        assert client.get(b"key") == b"\x00\xff\n"
    assert not server.is_running()

"""Hostile input met by the writers, each against `connector run` on a real broker:

- a key longer than LMDB allows (511 bytes, KV_KEY_PREFIX included) is poison at the write
  stage for that record only: dead-lettered, the rest of the batch stored, everything
  committed (Redis takes such keys as they are: tests/integration/test_writer_kv_contract);
- in HTTP batch mode, a record the receiver answers 400 is found by splitting the rejected
  request, and only it is dead-lettered; every other record reaches the receiver once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.http_sink import Fault, HttpSink
from harness.kafka import KafkaBroker, consumer_group_offsets, create_topic
from harness.kcat import produce
from tests.conftest import ROOT, connector_env, run_connector
from tests.integration.test_failures import consume_all
from tests.integration.test_runner_kafka import read_lmdb


def committed(kafka: KafkaBroker, group: str) -> dict[tuple[str, int], int | None]:
    return {tp: c for tp, (c, _end) in consumer_group_offsets(kafka.bootstrap, group).items()}


def raw_env(kafka: KafkaBroker, name: str, topic: str, **extra: str) -> dict[str, str]:
    """A connector storing raw records as they are (no transform)."""
    return connector_env(
        CONNECTOR_NAME=name,
        TOPICS=topic,
        TOPIC_SCHEMAS=f"{topic}=bytes",
        TRANSFORMS="",
        KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap,
        BATCH_MAX_MESSAGES="200",
        BATCH_MAX_WAIT_MS="100",
        # An unwritable batch used to be retried forever; three tries tell it apart.
        RETRY_MAX_ATTEMPTS="3",
        RETRY_INITIAL_MS="20",
        RETRY_MAX_MS="100",
        PYTHONPATH=str(ROOT),
        **extra,
    )


def topic_with_dlq(kafka: KafkaBroker, unique: str, prefix: str) -> tuple[str, str]:
    topic = name = f"{prefix}-{unique}"
    create_topic(kafka.bootstrap, topic, partitions=1)
    create_topic(kafka.bootstrap, f"{name}.dlq", partitions=1)
    return topic, name


# -- a key LMDB cannot hold ------------------------------------------------------------------

PREFIX = "p" * 200  # KV_KEY_PREFIX: 311 bytes are left for the key itself


def long_key_rows() -> list[tuple[int, bytes, bytes]]:
    rows = [(0, f"k{n}".encode(), f"v{n}".encode()) for n in range(10)]
    rows[4] = (0, b"f" * 311, b"fits with the prefix")
    rows[5] = (0, b"L" * 600, b"over the limit on its own")
    rows[7] = (0, b"P" * 312, b"over the limit with the prefix")
    return rows


def test_a_key_over_lmdbs_limit_is_dead_lettered_and_the_rest_stored(
    kafka: KafkaBroker, unique: str, tmp_path: Path
) -> None:
    topic, name = topic_with_dlq(kafka, unique, "longkey")
    rows = long_key_rows()
    produce(kafka.bootstrap, topic, rows)
    env = raw_env(
        kafka, name, topic, KV_URL=f"lmdb:{tmp_path / 'kv'}", KV_SYNC="false", KV_KEY_PREFIX=PREFIX
    )
    done = run_connector("run", "--until-caught-up", env=env, timeout=90)

    assert done.returncode == 0, done.stderr
    stored = read_lmdb(tmp_path / "kv")
    assert stored == {PREFIX.encode() + k: v for _, k, v in rows if k[:1] not in (b"L", b"P")}
    letters = consume_all(kafka.bootstrap, f"{name}.dlq", 2)
    assert [(m.key, m.value) for m in letters] == [
        (rows[5][1], rows[5][2]),
        (rows[7][1], rows[7][2]),
    ]
    for letter in letters:
        headers = dict(letter.headers)
        assert headers["dlq.stage"] == b"write"
        assert b"511" in headers["dlq.error.message"]
    assert b"KV_KEY_PREFIX" in dict(letters[1].headers)["dlq.error.message"]
    assert committed(kafka, name) == {(topic, 0): 10}


# -- HTTP batch mode: one record answered 400 ------------------------------------------------


@pytest.fixture(scope="module")
def sink() -> Iterator[HttpSink]:
    with HttpSink() as server:
        yield server


def test_http_batch_mode_dead_letters_only_the_rejected_record(
    kafka: KafkaBroker, sink: HttpSink, unique: str
) -> None:
    topic, name = topic_with_dlq(kafka, unique, "http400")
    path = f"/hostile/{unique}"
    sink.reject_when(path, lambda body: b"REJECT-ME" in body, Fault(status=400, body=b"bad"))
    rows = [
        (0, f"k{n}".encode(), json.dumps({"n": n, "note": "REJECT-ME" if n == 37 else ""}).encode())
        for n in range(100)
    ]
    produce(kafka.bootstrap, topic, rows)
    env = raw_env(
        kafka, name, topic, WRITER="http", HTTP_URL=sink.url(path), HTTP_BATCH_MAX_MESSAGES="100"
    )
    done = run_connector("run", "--until-caught-up", env=env, timeout=90)

    assert done.returncode == 0, done.stderr
    delivered = [doc["n"] for request in sink.accepted(path) for doc in request.documents()]
    assert delivered == [n for n in range(100) if n != 37]  # once each, in offset order
    letters = consume_all(kafka.bootstrap, f"{name}.dlq", 1)
    assert [m.key for m in letters] == [b"k37"]
    assert dict(letters[0].headers)["dlq.stage"] == b"write"
    assert committed(kafka, name) == {(topic, 0): 100}

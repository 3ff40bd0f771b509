"""Hostile input and odd cluster operations on the Kafka side, against `connector run` on a
real broker (created topics only: the harness's brokers create none by themselves):

- a transactional producer commits 10 records and aborts 5: only the 10 are stored;
- a header key that is not UTF-8: the record is read, stored, and dead-lettered (when it is
  poison for another reason) with the key's very bytes; nothing crashes;
- `BATCH_MAX_WAIT_MS=0`: records are consumed and SIGTERM is obeyed;
- two processes with one `KAFKA_GROUP_INSTANCE_ID`: the fenced one stops with one line, the
  other keeps everything;
- records deleted under a committed position: a WARNING naming both positions, counted;
- a session timeout the broker refuses: one fatal line naming `KAFKA_SESSION_TIMEOUT_MS`;
- a topic of `TOPICS` that does not exist: a WARNING, the others read, the topic joined once
  created, and never created by the connector (even where the broker would);
- a topic deleted and created again has another id in the batches the reader returns.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from connectors.config.settings import KafkaSettings
from connectors.core.reader import ReaderContext
from connectors.core.records import Batch
from harness.kafka import (
    KafkaBroker,
    consumer_group_offsets,
    create_topic,
    list_topics_async,
    run_sync,
    run_tool,
)
from harness.kcat import end_offsets, produce
from harness.ports import free_port
from harness.samples import zone_events
from readers.kafka import KafkaReader
from tests.conftest import EDGE_DESCRIPTORS, ROOT, connector_command, connector_env, run_connector
from tests.integration.test_runner_kafka import read_lmdb
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

POISON = b"\xff\xff\xff\xff"
RAW_KEY = b"\xff\xfe"
TOPIC_COMMAND = "org.apache.kafka.tools.TopicCommand"
DELETE_RECORDS = "org.apache.kafka.tools.DeleteRecordsCommand"


def raw_env(kafka: KafkaBroker, name: str, topics: str, kv: Path, **extra: str) -> dict[str, str]:
    """A pass-through connector (bytes in, key and value stored) into LMDB at `kv`."""
    settings = {
        "CONNECTOR_NAME": name,
        "TOPICS": topics,
        "TOPIC_SCHEMAS": ",".join(f"{t}=bytes" for t in topics.split(",")),
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
        "KV_URL": f"lmdb:{kv}",
        "KV_SYNC": "false",
        "BATCH_MAX_WAIT_MS": "100",
        "LOG_FORMAT": "text",
        "PYTHONPATH": str(ROOT),
    }
    return connector_env(**{**settings, **extra})


def stored(kv: Path) -> dict[bytes, bytes]:
    """What the store holds; nothing while the connector has not created it yet."""
    return read_lmdb(kv) if kv.exists() else {}


def committed(bootstrap: str, group: str) -> dict[tuple[str, int], int | None]:
    return {tp: c for tp, (c, _end) in consumer_group_offsets(bootstrap, group).items()}


def fatal_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("fatal: ")]


class Background:
    """`connector run` as a subprocess whose stderr is collected on a thread."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.process = subprocess.Popen(
            connector_command(*(args or ("run",))), env=env, cwd=ROOT,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert self.process.stderr is not None
        stream = self.process.stderr
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(iter(stream.readline, "")))
        self._reader.start()

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def saw(self, needle: str) -> bool:
        return needle in self.stderr

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (if still running); the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float) -> int:
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"still running after {timeout}s:\n{self.stderr[-3000:]}"
            ) from None
        self._close()
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._close()

    def _close(self) -> None:
        self._reader.join(10)
        if self.process.stderr is not None and not self.process.stderr.closed:
            self.process.stderr.close()


@pytest.fixture
def background() -> Iterator[list[Background]]:
    """Processes a test started, killed at its end whatever happened."""
    started: list[Background] = []
    yield started
    for process in started:
        process.kill()


# ------------------------------------------------------------------ aborted transactions


async def _transactions(bootstrap: str, topic: str, transactional_id: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=transactional_id)
    await producer.start()
    try:
        async with producer.transaction():
            for i in range(10):
                await producer.send(
                    topic, key=f"committed-{i}".encode(), value=b"kept", partition=0
                )
        await producer.begin_transaction()
        for i in range(5):
            await producer.send(topic, key=f"aborted-{i}".encode(), value=b"undone", partition=0)
        await producer.abort_transaction()
    finally:
        await producer.stop()


def test_records_of_an_aborted_transaction_never_reach_the_store(
    kafka: KafkaBroker, unique: str, tmp_path: Path
) -> None:
    topic, name = f"txn-{unique}", f"txn-{unique}"
    create_topic(kafka.bootstrap, topic, partitions=1)
    run_sync(lambda: _transactions(kafka.bootstrap, topic, f"txn-{unique}"), 60.0)
    end = end_offsets(kafka.bootstrap, topic, [0])[0]
    assert end == 17  # 10 records, a commit marker, 5 records, an abort marker

    done = run_connector(
        "run", "--until-caught-up", env=raw_env(kafka, name, topic, tmp_path / "kv")
    )
    assert done.returncode == 0, done.stderr
    kept = read_lmdb(tmp_path / "kv")
    assert sorted(kept) == sorted(f"committed-{i}".encode() for i in range(10))
    assert set(kept.values()) == {b"kept"}
    assert committed(kafka.bootstrap, name) == {(topic, 0): end}  # past the markers too


# ------------------------------------------------------------- header keys not UTF-8


def _dead_letters(bootstrap: str, topic: str) -> list[tuple[bytes, bytes]]:
    """(key, raw header block as kcat prints it) of each record of `topic`, read by kcat:
    a client of its own, which keeps header keys as bytes."""
    kcat = shutil.which("kcat")
    assert kcat is not None
    done = subprocess.run(
        [kcat, "-C", "-F", "/dev/null", "-b", bootstrap, "-t", topic, "-e", "-q",
         "-f", "%k\\x1f%h\\x1e"],
        capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    return [
        (key, headers)
        for key, _, headers in (
            entry.partition(b"\x1f") for entry in done.stdout.split(b"\x1e") if entry.strip()
        )
    ]


def test_a_header_key_that_is_not_utf8_is_read_stored_and_dead_lettered_byte_for_byte(
    kafka: KafkaBroker, unique: str, tmp_path: Path
) -> None:
    topic, name = f"rawkey-{unique}", f"rawkey-{unique}"
    create_topic(kafka.bootstrap, topic, partitions=1)
    events = list(zone_events(3, partitions=1))
    headers = [(RAW_KEY, b"val"), (b"plain", b"ok")]
    produce(kafka.bootstrap, topic, [(0, events[0].key, events[0].value)], headers=headers)
    produce(kafka.bootstrap, topic, [(0, b"poison", POISON)], headers=headers)
    produce(kafka.bootstrap, topic, [(0, e.key, e.value) for e in events[1:]])
    env = raw_env(
        kafka, name, topic, tmp_path / "kv",
        TOPIC_SCHEMAS=f"{topic}=edge.v1.ZoneSettingsChanged",
        PROTO_DESCRIPTOR_SET=str(EDGE_DESCRIPTORS),
    )  # fmt: skip

    done = run_connector("run", "--until-caught-up", env=env)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert f"{topic}[0]@0: header keys {RAW_KEY!r} are not UTF-8" in done.stderr
    assert read_lmdb(tmp_path / "kv") == {e.key: e.value for e in events}
    letters = _dead_letters(kafka.bootstrap, f"{name}.dlq")
    assert [key for key, _ in letters] == [b"poison"]
    assert letters[0][1].startswith(RAW_KEY + b"=val,plain=ok,dlq.stage=decode,")
    assert committed(kafka.bootstrap, name) == {(topic, 0): 4}


# ---------------------------------------------------------------- BATCH_MAX_WAIT_MS=0


def test_batch_max_wait_ms_0_consumes_and_obeys_sigterm(
    kafka: KafkaBroker, unique: str, tmp_path: Path, background: list[Background]
) -> None:
    topic, name = f"nowait-{unique}", f"nowait-{unique}"
    create_topic(kafka.bootstrap, topic, partitions=2)
    rows = [(i % 2, f"k{i}".encode(), f"v{i}".encode()) for i in range(200)]
    produce(kafka.bootstrap, topic, rows)
    env = raw_env(
        kafka, name, topic, tmp_path / "kv", BATCH_MAX_WAIT_MS="0", BATCH_MAX_MESSAGES="7"
    )

    done = run_connector("run", "--until-caught-up", env=env, timeout=90)
    assert done.returncode == 0, done.stderr
    assert read_lmdb(tmp_path / "kv") == {k: v for _, k, v in rows}
    assert committed(kafka.bootstrap, name) == {(topic, 0): 100, (topic, 1): 100}

    # Idle at the end of the topic with a zero wait: new records arrive, SIGTERM is obeyed.
    running = Background(env)
    background.append(running)
    more = [(0, f"more{i}".encode(), b"x") for i in range(20)]
    produce(kafka.bootstrap, topic, more)
    wait_for(lambda: len(stored(tmp_path / "kv")) == 220, timeout=60, what="the 20 new records")
    assert running.stop(timeout=20) == 0, running.stderr
    assert committed(kafka.bootstrap, name) == {(topic, 0): 120, (topic, 1): 100}


# -------------------------------------------------------- one static member id twice


def test_a_second_process_with_the_same_group_instance_id_fences_the_first(
    kafka: KafkaBroker, unique: str, tmp_path: Path, background: list[Background]
) -> None:
    topic, name = f"fence-{unique}", f"fence-{unique}"
    create_topic(kafka.bootstrap, topic, partitions=2)
    produce(kafka.bootstrap, topic, [(i % 2, f"a{i}".encode(), b"1") for i in range(100)])
    same = {"KAFKA_GROUP_INSTANCE_ID": "pod-0", "KAFKA_SESSION_TIMEOUT_MS": "10000"}
    first = Background(raw_env(kafka, name, topic, tmp_path / "first", **same))
    background.append(first)
    wait_for(lambda: len(stored(tmp_path / "first")) == 100, timeout=60, what="first's 100")

    second = Background(raw_env(kafka, name, topic, tmp_path / "second", **same))
    background.append(second)
    assert first.wait(timeout=60) == 1, first.stderr
    lines = fatal_lines(first.stderr)
    assert lines == [
        f"fatal: kafka: fenced: another process joined group '{name}' with the same "
        "KAFKA_GROUP_INSTANCE_ID='pod-0' (FENCED_INSTANCE_ID, error 82); this one stops: give "
        "each process its own KAFKA_GROUP_INSTANCE_ID (e.g. its pod name)"
    ], first.stderr

    produce(kafka.bootstrap, topic, [(i % 2, f"b{i}".encode(), b"2") for i in range(50)])
    wait_for(
        lambda: {f"b{i}".encode() for i in range(50)} <= stored(tmp_path / "second").keys(),
        timeout=60,
        what="the second process storing the 50 new records",
    )
    assert second.process.poll() is None, second.stderr
    assert second.stop() == 0, second.stderr
    assert not fatal_lines(second.stderr)
    assert committed(kafka.bootstrap, name) == {(topic, 0): 75, (topic, 1): 75}


# ---------------------------------------------------------- records deleted under us


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:  # noqa: S310
        return str(response.read().decode())


def test_records_deleted_under_the_committed_position_are_warned_about_and_counted(
    kafka: KafkaBroker, unique: str, tmp_path: Path, background: list[Background]
) -> None:
    topic, name = f"deleted-{unique}", f"deleted-{unique}"
    create_topic(kafka.bootstrap, topic, partitions=1)
    produce(kafka.bootstrap, topic, [(0, f"a{i}".encode(), b"1") for i in range(10)])
    env = raw_env(kafka, name, topic, tmp_path / "kv")
    assert run_connector("run", "--until-caught-up", env=env).returncode == 0
    produce(kafka.bootstrap, topic, [(0, f"b{i}".encode(), b"2") for i in range(10)])
    offsets = tmp_path / "delete.json"
    offsets.write_text(json.dumps({"partitions": [{"topic": topic, "partition": 0, "offset": 15}]}))
    run_tool(
        DELETE_RECORDS, "--bootstrap-server", kafka.bootstrap, "--offset-json-file", str(offsets)
    )

    port = free_port()
    running = Background({**env, "METRICS_PORT": str(port), "METRICS_HOST": "127.0.0.1"})
    background.append(running)
    warning = (
        f"WARNING connectors.readers.kafka: {topic}[0]: position 10 is no longer in the log "
        "(records deleted by retention or kafka-delete-records, or the topic re-created): "
        "reset to 15 by KAFKA_AUTO_OFFSET_RESET=earliest, 5 offsets skipped"
    )
    wait_for(lambda: running.saw(warning), timeout=60, what="the reset WARNING")
    wait_for(lambda: len(stored(tmp_path / "kv")) == 15, timeout=60, what="b15..b19 stored")
    series = f'connector_offset_resets_total{{connector="{name}",topic="{topic}"}} 1.0'
    wait_for(lambda: series in _scrape(port), timeout=30, what=series)
    assert running.stop() == 0, running.stderr
    kept = read_lmdb(tmp_path / "kv")
    assert sorted(kept) == sorted(
        [f"a{i}".encode() for i in range(10)] + [f"b{i}".encode() for i in range(5, 10)]
    )
    assert committed(kafka.bootstrap, name) == {(topic, 0): 20}


# ------------------------------------------------------- a session timeout refused


def test_a_session_timeout_the_broker_refuses_is_one_line_naming_the_variable(
    kafka: KafkaBroker, unique: str, tmp_path: Path
) -> None:
    topic, name = f"session-{unique}", f"session-{unique}"
    create_topic(kafka.bootstrap, topic, partitions=1)
    produce(kafka.bootstrap, topic, [(0, b"k", b"v")])
    env = raw_env(kafka, name, topic, tmp_path / "kv", KAFKA_SESSION_TIMEOUT_MS="1000")
    done = run_connector("run", "--until-caught-up", env=env, timeout=60)
    assert done.returncode == 1, done.stderr
    assert fatal_lines(done.stderr) == [
        "fatal: kafka: the broker refuses KAFKA_SESSION_TIMEOUT_MS=1000 "
        "(InvalidSessionTimeoutError): it must lie between the broker's "
        "group.min.session.timeout.ms and group.max.session.timeout.ms (6000 and 1800000 by "
        "default)"
    ]
    assert "Traceback" not in done.stderr
    assert committed(kafka.bootstrap, name) == {}
    assert read_lmdb(tmp_path / "kv") == {}


# ------------------------------------------------------------ a topic that is missing


def test_a_missing_topic_is_waited_for_while_the_others_are_read(
    kafka: KafkaBroker, unique: str, tmp_path: Path, background: list[Background]
) -> None:
    present, missing, name = f"here-{unique}", f"later-{unique}", f"wait-{unique}"
    create_topic(kafka.bootstrap, present, partitions=1)
    produce(kafka.bootstrap, present, [(0, f"h{i}".encode(), b"1") for i in range(10)])
    running = Background(raw_env(kafka, name, f"{present},{missing}", tmp_path / "kv"))
    background.append(running)

    warning = (
        f"WARNING connectors.readers.kafka: TOPICS names '{missing}', which does not exist: "
        "waiting for it to be created"
    )
    wait_for(lambda: running.saw(warning), timeout=30, what="the missing-topic WARNING")
    wait_for(lambda: len(stored(tmp_path / "kv")) == 10, timeout=30, what="the present topic")
    assert missing not in run_sync(lambda: list_topics_async(kafka.bootstrap), 30)

    create_topic(kafka.bootstrap, missing, partitions=1)
    produce(kafka.bootstrap, missing, [(0, f"l{i}".encode(), b"2") for i in range(5)])
    wait_for(lambda: len(stored(tmp_path / "kv")) == 15, timeout=60, what="the new topic")
    assert running.stop() == 0, running.stderr
    assert running.stderr.count(warning) == 1
    assert committed(kafka.bootstrap, name) == {(present, 0): 10, (missing, 0): 5}


@pytest.fixture(scope="module")
def creating_broker() -> Iterator[KafkaBroker]:
    """A broker that does create topics on demand, as some clusters still do."""
    broker = KafkaBroker(properties={"auto.create.topics.enable": "true"})
    broker.start()
    try:
        yield broker
    finally:
        broker.close()


def test_the_connector_creates_no_topic_it_reads_even_where_the_broker_would(
    creating_broker: KafkaBroker, unique: str, tmp_path: Path, background: list[Background]
) -> None:
    topic, name = f"never-{unique}", f"never-{unique}"
    # A progress line every 6 s: once one shows, the missing topic was looked for again
    # (every 5 s) besides at start.
    env = raw_env(creating_broker, name, topic, tmp_path / "kv", LOG_PROGRESS_INTERVAL_S="6")
    running = Background(env)
    background.append(running)
    wait_for(
        lambda: running.saw(f"TOPICS names '{topic}', which does not exist"),
        timeout=30,
        what="the missing-topic WARNING",
    )
    wait_for(lambda: running.saw("progress: "), timeout=30, what="a progress line")
    assert running.stop() == 0, running.stderr
    topics = run_sync(lambda: list_topics_async(creating_broker.bootstrap), 30)
    assert topic not in topics
    assert f"{name}.dlq" in topics  # created on purpose: DLQ_CREATE=true


# -------------------------------------------------------------- a topic's incarnation


async def _first_batch(bootstrap: str, topic: str, group: str) -> Batch:
    context = ReaderContext(
        connector_name=group, topics=(topic,), batch_max_messages=100, batch_max_wait_ms=200
    )
    reader = KafkaReader(KafkaSettings.model_validate({"bootstrap_servers": bootstrap}), context)

    async def revoked(_: Any) -> None:
        return None

    await reader.start(revoked)
    try:
        for _ in range(150):
            batch = await reader.batch()
            if batch.records:
                return batch
        raise AssertionError(f"nothing read from {topic}")
    finally:
        await reader.close()


async def _delete_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()


def _kafka_topic_id(bootstrap: str, topic: str) -> str:
    """The id Kafka's own tool shows (`kafka-topics --describe`)."""
    out = run_tool(TOPIC_COMMAND, "--describe", "--topic", topic, "--bootstrap-server", bootstrap)
    found = re.search(r"TopicId: (\S+)", out.stdout)
    assert found, out.stdout
    return found.group(1)


def test_a_topic_deleted_and_created_again_has_another_id_in_each_batch(
    kafka: KafkaBroker, unique: str
) -> None:
    topic = f"again-{unique}"
    create_topic(kafka.bootstrap, topic, partitions=1)
    produce(kafka.bootstrap, topic, [(0, b"old", b"1")])
    first = run_sync(lambda: _first_batch(kafka.bootstrap, topic, f"ids-a-{unique}"), 90)
    old_id = _kafka_topic_id(kafka.bootstrap, topic)

    run_sync(lambda: _delete_topic(kafka.bootstrap, topic), 30)
    wait_for(
        lambda: topic not in run_sync(lambda: list_topics_async(kafka.bootstrap), 30),
        timeout=30,
        what=f"{topic} deleted",
    )
    create_topic(kafka.bootstrap, topic, partitions=1)
    produce(kafka.bootstrap, topic, [(0, b"new", b"2")])
    second = run_sync(lambda: _first_batch(kafka.bootstrap, topic, f"ids-b-{unique}"), 90)
    new_id = _kafka_topic_id(kafka.bootstrap, topic)

    assert [r.key for r in first.records] == [b"old"]
    assert [r.key for r in second.records] == [b"new"]
    assert dict(first.topic_ids) == {topic: old_id}
    assert dict(second.topic_ids) == {topic: new_id}
    assert old_id != new_id

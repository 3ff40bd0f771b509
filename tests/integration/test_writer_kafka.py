"""The Kafka writer against the harness's real broker: typed output, headers, replays."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from connectors import (
    Batch,
    Delete,
    Entry,
    PoisonError,
    Put,
    Record,
    RetriableError,
    TransformContext,
    WriteBatch,
    Writer,
    WriterContext,
)
from connectors.testing.conformance import Delivered, Target, WriterContract, make_batch
from harness.kafka import KafkaBroker, consumer_group_offsets, create_topic, create_topic_async
from harness.kcat import produce
from harness.ports import free_port
from harness.samples import SampleEvent, zone_events
from tests.conftest import EDGE_DESCRIPTORS, ROOT, connector_command, connector_env, run_connector
from tests.waiting import wait_for
from transforms.pf_edge import pf_edge
from transforms.proto.edge import EdgeZoneConfig, ZoneSettingsChanged
from writers.kafka import PLUGIN, KafkaWriterSettings

pytestmark = pytest.mark.integration

CONTEXT = WriterContext(connector_name="kafka-it")
EDGE = "edge.v1.EdgeZoneConfig"


def kafka_writer(bootstrap: str, topic: str, output_type: str = "bytes") -> Writer:
    settings = KafkaWriterSettings(
        bootstrap_servers=bootstrap, output_topic=topic, output_type=output_type
    )
    writer: Writer = PLUGIN.build(settings, CONTEXT)
    return writer


async def read_topic(
    bootstrap: str, topic: str, count: int = 3
) -> list[ConsumerRecord[bytes, bytes]]:
    """Everything in the `count` partitions of `topic` up to their end, partition by
    partition."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        partitions = list(range(count))
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        found: dict[int, list[ConsumerRecord[bytes, bytes]]] = {p: [] for p in partitions}
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                found[tp.partition].extend(records)
        return [record for p in partitions for record in found[p]]
    finally:
        await consumer.stop()


def header(record: ConsumerRecord[Any, Any], name: str) -> bytes | None:
    return dict(record.headers).get(name)


class KafkaTarget:
    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap, self.topic = bootstrap, topic

    def writer(self) -> Writer:
        return kafka_writer(self.bootstrap, self.topic)

    async def read(self) -> Sequence[Delivered]:
        return [
            Delivered((header(r, "connector-source") or b"").decode(), r.key, r.value)
            for r in await read_topic(self.bootstrap, self.topic)
        ]


class TestKafkaContract(WriterContract):
    keeps_history = True
    replay_redelivers = True
    failures = {
        "unreachable": RetriableError,
        "wrong_type": PoisonError,
        "raw_bytes_for_a_typed_topic": PoisonError,
    }

    @pytest.fixture(autouse=True)
    def _broker(self, kafka: KafkaBroker) -> None:
        self.bootstrap = kafka.bootstrap

    async def new_target(self) -> Target:
        topic = f"out-{uuid.uuid4().hex[:12]}"
        await create_topic_async(self.bootstrap, topic, 3)
        return KafkaTarget(self.bootstrap, topic)

    async def failing_write(self, scenario: str) -> tuple[Writer, WriteBatch | None]:
        if scenario == "unreachable":
            return kafka_writer(f"127.0.0.1:{free_port()}", "nowhere"), None
        topic = f"typed-{uuid.uuid4().hex[:12]}"
        await create_topic_async(self.bootstrap, topic, 1)
        writer = kafka_writer(self.bootstrap, topic, EDGE)
        if scenario == "raw_bytes_for_a_typed_topic":
            return writer, None
        wrong = ZoneSettingsChanged(zone_id="z1")
        base = make_batch("in", [(0, 0, b"z1", b"")])
        entry = Entry(base.entries[0].source, b"z1", wrong.SerializeToString(), wrong)
        return writer, WriteBatch(base.batch, (entry,))


async def test_typed_output_headers_and_tombstones(kafka: KafkaBroker) -> None:
    topic = f"edge-{uuid.uuid4().hex[:8]}"
    await create_topic_async(kafka.bootstrap, topic, 1)
    trace = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    source = Record(
        "zone-settings", 2, 41, b"z1", b"...",
        (("traceparent", trace), ("content-type", b"application/x-protobuf; messageType=x.Y")),
    )  # fmt: skip
    config = EdgeZoneConfig(zone_id="z1", version=3, settings={"ssl": "full"})
    fanned = Record("zone-settings", 2, 42, b"z2", b"...")
    entries = (
        Entry(source, b"zone:z1", config.SerializeToString(deterministic=True), config),
        Entry(fanned, b"zone:z2", config.SerializeToString(deterministic=True), config),
        Entry(fanned, b"zone:z9", None),
    )
    writer = kafka_writer(kafka.bootstrap, topic, EDGE)
    await writer.start()
    await writer.write(WriteBatch(Batch((source, fanned)), entries))
    await writer.close()

    first, second, tombstone = await read_topic(kafka.bootstrap, topic, 1)
    assert EdgeZoneConfig.FromString(first.value) == config
    assert first.key == b"zone:z1"
    assert dict(first.headers) == {
        "traceparent": trace,
        "connector-source": b"zone-settings/2/41/0",
        "content-type": f"application/x-protobuf; messageType={EDGE}".encode(),
    }
    assert header(second, "connector-source") == b"zone-settings/2/42/0"
    assert (tombstone.key, tombstone.value) == (b"zone:z9", None)
    assert header(tombstone, "connector-source") == b"zone-settings/2/42/1"
    assert header(tombstone, "content-type") is None


# ----------------------------------------------------------------- through the connector


def expected_per_key(events: list[SampleEvent]) -> dict[bytes, list[bytes | None]]:
    """pf_edge applied in input order, outputs grouped by output key."""
    per_key: dict[bytes, list[bytes | None]] = {}
    offsets: dict[int, int] = {}
    for event in events:
        offset = offsets.get(event.partition, 0)
        offsets[event.partition] = offset + 1
        ctx = TransformContext.of(Record("t", event.partition, offset, event.key, b""))
        out = pf_edge(event.message, ctx)
        if isinstance(out, Put):
            value = out.value.SerializeToString(deterministic=True)
            per_key.setdefault(str(out.key).encode(), []).append(value)
        elif isinstance(out, Delete):
            per_key.setdefault(str(out.key).encode(), []).append(None)
    return per_key


def edge_env(kafka: KafkaBroker, topic: str, out: str, group: str, **extra: str) -> dict[str, str]:
    return connector_env(
        **{
            "CONNECTOR_NAME": group,
            "TOPICS": topic,
            "TOPIC_SCHEMAS": f"{topic}=edge.v1.ZoneSettingsChanged",
            "PROTO_DESCRIPTOR_SET": str(EDGE_DESCRIPTORS),
            "TRANSFORMS": "pf_edge",
            "WRITER": "kafka",
            "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
            "KAFKA_SESSION_TIMEOUT_MS": "6000",
            "KAFKA_OUTPUT_TOPIC": out,
            "KAFKA_OUTPUT_TYPE": EDGE,
            "BATCH_MAX_MESSAGES": "250",
            "BATCH_MAX_WAIT_MS": "100",
            "PYTHONPATH": str(ROOT),
            **extra,
        }
    )


def output_per_key(records: list[ConsumerRecord[bytes, bytes]]) -> dict[bytes, list[bytes | None]]:
    """Output values per key, a repeated delivery (same connector-source) counted once,
    after checking that every repeat carries the same key and value."""
    first: dict[bytes, tuple[bytes, bytes | None]] = {}
    per_key: dict[bytes, list[bytes | None]] = {}
    for record in records:
        origin = header(record, "connector-source")
        assert origin is not None
        if origin in first:
            assert first[origin] == (record.key, record.value), f"{origin!r} changed on replay"
            continue
        first[origin] = (record.key, record.value)
        per_key.setdefault(record.key, []).append(record.value)
    return per_key


def load(kafka: KafkaBroker, unique: str, count: int) -> tuple[str, str, list[SampleEvent]]:
    topic, out = f"zs-{unique}", f"edge-out-{unique}"
    create_topic(kafka.bootstrap, topic, partitions=3)
    create_topic(kafka.bootstrap, out, partitions=3)
    events = list(zone_events(count, seed=23))
    produce(kafka.bootstrap, topic, [(e.partition, e.key, e.value) for e in events])
    return topic, out, events


def test_10k_records_to_a_typed_output_topic(kafka: KafkaBroker, unique: str) -> None:
    topic, out, events = load(kafka, unique, 10_000)
    group = f"k-{unique}"
    done = run_connector("run", "--until-caught-up", env=edge_env(kafka, topic, out, group))
    assert done.returncode == 0, done.stderr
    assert "caught up: 10000/10000 records" in done.stderr

    records = asyncio.run(read_topic(kafka.bootstrap, out))
    expected = expected_per_key(events)
    assert len(records) == sum(len(v) for v in expected.values())  # nothing twice
    assert output_per_key(records) == expected
    assert all(
        header(r, "content-type") == f"application/x-protobuf; messageType={EDGE}".encode()
        for r in records
        if r.value is not None
    )


def test_kill_9_mid_run_then_restart_loses_nothing(
    kafka: KafkaBroker, unique: str, tmp_path: Path
) -> None:
    topic, out, events = load(kafka, unique, 3000)
    group = f"kk-{unique}"
    gate = tmp_path / "gate"
    gate.mkdir()
    gated = edge_env(
        kafka, topic, out, group,
        TRANSFORM_MODULES="tests.fixtures.gate", TRANSFORMS="gate,pf_edge",
        GATE_DIR=str(gate), GATE_PARTITION="1", GATE_OFFSET="500",
    )  # fmt: skip
    process = subprocess.Popen(
        connector_command("run", "--until-caught-up"),
        env=gated, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_for(lambda: (gate / "reached").exists(), timeout=60, what="the gate")
        process.kill()
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)
    assert process.returncode == -signal.SIGKILL
    written = asyncio.run(read_topic(kafka.bootstrap, out))
    assert 0 < len(written) < sum(len(v) for v in expected_per_key(events).values())

    restarted = run_connector("run", "--until-caught-up", env=edge_env(kafka, topic, out, group))
    assert restarted.returncode == 0, restarted.stderr
    assert output_per_key(asyncio.run(read_topic(kafka.bootstrap, out))) == expected_per_key(events)
    table = consumer_group_offsets(kafka.bootstrap, group)
    assert sum(c or 0 for (t, _), (c, _) in table.items() if t == topic) == len(events)


def test_config_needs_output_topic_and_type(kafka: KafkaBroker) -> None:
    env = connector_env(
        CONNECTOR_NAME="c", TOPICS="t", TOPIC_SCHEMAS="t=bytes", WRITER="kafka",
        KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap, KAFKA_OUTPUT_TYPE="not a type",
    )  # fmt: skip
    checked = run_connector("check", env=env)
    assert checked.returncode == 2
    assert "KAFKA_OUTPUT_TOPIC: required" in checked.stderr
    assert "KAFKA_OUTPUT_TYPE='not a type'" in checked.stderr

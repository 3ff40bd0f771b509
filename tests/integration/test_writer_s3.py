"""The S3/R2 writer against a real S3 server (S3Proxy from Maven Central, SigV4 auth).

What was stored is read back two ways: through the S3 API, and from S3Proxy's files on
disk, which share no code with any S3 client.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import signal
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import obstore
import pytest
from obstore.store import S3Store

from connectors import (
    Batch,
    Entry,
    FatalError,
    PoisonError,
    RetriableError,
    WriteBatch,
    Writer,
    WriterContext,
)
from connectors.testing.conformance import Delivered, Target, WriterContract, make_batch
from harness.kafka import KafkaBroker, consumer_group_offsets, create_topic
from harness.kcat import produce
from harness.ports import free_port
from harness.s3 import AnswerHold, S3ProxyServer
from tests.conftest import EDGE_DESCRIPTORS, ROOT, connector_command, connector_env, run_connector
from tests.waiting import wait_for
from transforms.proto.edge import message_class
from writers.s3 import PLUGIN
from writers.s3.formats import delimited_values, ndjson_documents
from writers.s3.naming import offsets_of
from writers.s3.settings import S3Settings

pytestmark = pytest.mark.integration

BUCKET = "connector-it"
CONTEXT = WriterContext(connector_name="s3-it")


@pytest.fixture(scope="module")
def s3() -> Iterator[S3ProxyServer]:
    with S3ProxyServer() as server:
        server.create_bucket(BUCKET)
        yield server


@pytest.fixture(autouse=True)
def _aws_credentials(s3: S3ProxyServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process writers take credentials from the standard AWS variables, as in prod."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)


def settings(s3: S3ProxyServer, prefix: str, **extra: object) -> S3Settings:
    values: dict[str, object] = {
        "bucket": BUCKET,
        "prefix": prefix,
        "endpoint_url": s3.endpoint,
        "region": s3.region,
        **extra,
    }
    return S3Settings(**values)  # type: ignore[arg-type]


def reader(s3: S3ProxyServer) -> S3Store:
    return S3Store(
        BUCKET,
        endpoint=s3.endpoint,
        region=s3.region,
        access_key_id=s3.access_key,
        secret_access_key=s3.secret_key,
        client_options={"allow_http": True},
    )


async def objects(s3: S3ProxyServer, prefix: str) -> dict[str, bytes]:
    """Every object under `prefix` through the S3 API, decompressed, in key order."""
    store = reader(s3)
    found: dict[str, bytes] = {}
    metas = sorted(await obstore.list(store, prefix).collect_async(), key=lambda m: m["path"])
    for meta in metas:
        data = bytes(await (await obstore.get_async(store, meta["path"])).bytes_async())
        found[meta["path"]] = gzip.decompress(data) if meta["path"].endswith(".gz") else data
    return found


def raw_lines(body: bytes) -> list[tuple[bytes | None, bytes | None]]:
    """(key, value) of each `{"key_b64", "value_b64"}` line."""

    def unb64(text: str | None) -> bytes | None:
        return None if text is None else base64.b64decode(text)

    return [(unb64(d["key_b64"]), unb64(d["value_b64"])) for d in ndjson_documents(body)]


class S3Target:
    def __init__(self, s3: S3ProxyServer, prefix: str) -> None:
        self.s3 = s3
        self.prefix = prefix

    def writer(self) -> Writer:
        writer: Writer = PLUGIN.build(settings(self.s3, self.prefix), CONTEXT)
        return writer

    async def read(self) -> Sequence[Delivered]:
        delivered = []
        for key, body in (await objects(self.s3, self.prefix)).items():
            for n, (k, v) in enumerate(raw_lines(body)):
                delivered.append(Delivered(f"{key}#{n}", k, v))
        return delivered


class TestS3Contract(WriterContract):
    keeps_history = True
    failures = {
        "unreachable": RetriableError,
        "wrong_secret": FatalError,
        "missing_bucket": FatalError,
    }

    @pytest.fixture(autouse=True)
    def _server(self, s3: S3ProxyServer) -> None:
        self.s3 = s3

    async def new_target(self) -> Target:
        return S3Target(self.s3, f"contract/{uuid.uuid4().hex[:12]}")

    async def failing_write(self, scenario: str) -> tuple[Writer, WriteBatch | None]:
        if scenario == "unreachable":
            broken = settings(self.s3, "x", endpoint_url=f"http://127.0.0.1:{free_port()}")
        elif scenario == "wrong_secret":
            with pytest.MonkeyPatch.context() as patch:  # the client reads it when built
                patch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
                writer: Writer = PLUGIN.build(settings(self.s3, "x"), CONTEXT)
            return writer, None
        else:
            broken = settings(self.s3, "x", bucket="no-such-bucket")
        built: Writer = PLUGIN.build(broken, CONTEXT)
        return built, None


async def test_object_names_come_from_topic_partition_and_offsets(s3: S3ProxyServer) -> None:
    prefix = f"names/{uuid.uuid4().hex[:8]}"
    batch = make_batch(
        "audit.v1",
        [(0, o, b"k%d" % o, b"zero-%d" % o) for o in range(5)]
        + [(2, o, b"k%d" % o, b"two-%d" % o) for o in range(10, 13)],
    )
    writer = PLUGIN.build(settings(s3, prefix), CONTEXT)
    await writer.start()
    await writer.write(batch)
    await writer.close()

    names = [
        f"{prefix}/audit.v1/0/00000000000000000000-00000000000000000004.ndjson.gz",
        f"{prefix}/audit.v1/2/00000000000000000010-00000000000000000012.ndjson.gz",
    ]
    stored = await objects(s3, prefix)
    assert list(stored) == names
    assert raw_lines(stored[names[0]]) == [(b"k%d" % o, b"zero-%d" % o) for o in range(5)]
    on_disk = s3.files(BUCKET, prefix)
    assert sorted(on_disk) == names
    assert gzip.decompress(on_disk[names[1]]) == stored[names[1]]


async def test_date_partitioning_by_record_timestamp(s3: S3ProxyServer) -> None:
    prefix = f"dated/{uuid.uuid4().hex[:8]}"
    day = 86_400_000
    base = make_batch("t", [(1, o, b"k", b"v%d" % o) for o in range(4)], timestamp_ms=0)
    # offsets 0 and 1 on 1970-01-01, 2 and 3 a day later
    moved = [r if r.offset < 2 else r._replace(timestamp_ms=day) for r in base.batch.records]
    batch = WriteBatch(Batch(tuple(moved)), tuple(Entry(r, r.key, r.value) for r in moved))
    writer = PLUGIN.build(settings(s3, prefix, partition_by="date", compression="none"), CONTEXT)
    await writer.start()
    await writer.write(batch)
    await writer.close()
    assert list(await objects(s3, prefix)) == [
        f"{prefix}/t/dt=1970-01-01/1/00000000000000000000-00000000000000000001.ndjson",
        f"{prefix}/t/dt=1970-01-02/1/00000000000000000002-00000000000000000003.ndjson",
    ]


async def test_protobuf_format_is_length_delimited_and_refuses_deletes(
    s3: S3ProxyServer,
) -> None:
    prefix = f"proto/{uuid.uuid4().hex[:8]}"
    config = message_class("edge.v1.EdgeZoneConfig")
    messages = [config(zone_id=f"z{n}", version=n, features=["a", "b"][: n % 3]) for n in range(6)]
    base = make_batch("zones", [(0, n, b"z%d" % n, b"") for n in range(6)])
    entries = tuple(
        Entry(e.source, e.key, m.SerializeToString(), m)
        for e, m in zip(base.entries, messages, strict=True)
    )
    writer = PLUGIN.build(settings(s3, prefix, format="protobuf", compression="none"), CONTEXT)
    await writer.start()
    await writer.write(WriteBatch(base.batch, entries))

    (name, body), *_ = (await objects(s3, prefix)).items()
    assert name.endswith("/zones/0/00000000000000000000-00000000000000000005.protodelim")
    assert [config.FromString(v) for v in delimited_values(body)] == messages

    tombstone = make_batch("zones", [(0, 6, b"z6", None)])
    with pytest.raises(PoisonError) as refused:
        await writer.write(tombstone)
    assert refused.value.record is tombstone.batch.records[0]
    await writer.close()


async def test_ndjson_renders_protobuf_json_mapping(s3: S3ProxyServer) -> None:
    prefix = f"json/{uuid.uuid4().hex[:8]}"
    config = message_class("edge.v1.EdgeZoneConfig")
    message = config(zone_id="z1", version=7, settings={"ssl": "full"}, updated_at_ms=5)
    base = make_batch("zones", [(0, 0, b"z1", b"")])
    entry = Entry(base.entries[0].source, b"z1", message.SerializeToString(), message)
    writer = PLUGIN.build(settings(s3, prefix), CONTEXT)
    await writer.start()
    await writer.write(WriteBatch(base.batch, (entry,)))
    await writer.close()
    (body,) = (await objects(s3, prefix)).values()
    assert ndjson_documents(body) == [
        {"zone_id": "z1", "version": "7", "settings": {"ssl": "full"}, "updated_at_ms": "5"}
    ]


async def test_large_object_goes_up_in_parts(s3: S3ProxyServer) -> None:
    prefix = f"big/{uuid.uuid4().hex[:8]}"
    chunk = b"x" * 1_000_000
    batch = make_batch("big", [(0, o, b"k", chunk) for o in range(12)])
    relay = AnswerHold(s3.port)
    config = settings(
        s3, prefix, compression="none", part_bytes=5 * 1024 * 1024, endpoint_url=relay.endpoint
    )
    writer = PLUGIN.build(config, CONTEXT)
    try:
        await writer.start()
        await writer.write(batch)
        await writer.close()
    finally:
        relay.close()
    (name,) = s3.files(BUCKET, prefix)
    assert len(s3.files(BUCKET, prefix)[name]) > 16_000_000  # base64 inside JSON
    used = [line for line in relay.requests if name in line]
    assert used[0].startswith(f"POST /{BUCKET}/{name}?uploads"), used
    assert sum("partNumber=" in line for line in used) == 4, used  # 16 MB in 5 MiB parts
    assert used[-1].startswith(f"POST /{BUCKET}/{name}?uploadId="), used
    assert [v for _, v in raw_lines((await objects(s3, prefix))[name])] == [chunk] * 12


async def test_replay_with_other_batch_boundaries_stores_each_record_once(
    s3: S3ProxyServer,
) -> None:
    """A run dies after uploading offsets 0-9 but before committing; the next run replays
    from 0 with batches cut elsewhere (0-4, then 5-14)."""
    prefix = f"replay/{uuid.uuid4().hex[:8]}"
    rows = [(0, o, b"k%d" % o, b"v%d" % o) for o in range(15)]
    crashed = PLUGIN.build(settings(s3, prefix), CONTEXT)
    await crashed.start()
    await crashed.write(make_batch("t", rows[:10]))

    restarted = PLUGIN.build(settings(s3, prefix), CONTEXT)
    await restarted.start()
    await restarted.write(make_batch("t", rows[:5]))
    await restarted.write(make_batch("t", rows[5:]))
    await restarted.close()

    stored = await objects(s3, prefix)
    assert [offsets_of(name) for name in stored] == [(0, 9), (10, 14)]
    assert [v for body in stored.values() for _, v in raw_lines(body)] == [r[3] for r in rows]


# ----------------------------------------------------------------- through the connector


def produce_raw(kafka: KafkaBroker, topic: str, per_partition: int) -> dict[int, int]:
    create_topic(kafka.bootstrap, topic, partitions=3)
    rows = [
        (p, f"key-{p}-{o % 50}".encode(), f"record {p}/{o}".encode())
        for p in range(3)
        for o in range(per_partition)
    ]
    return produce(kafka.bootstrap, topic, rows)


def s3_env(
    kafka: KafkaBroker, s3: S3ProxyServer, topic: str, group: str, prefix: str, **extra: str
) -> dict[str, str]:
    return connector_env(
        **{
            "CONNECTOR_NAME": group,
            "TOPICS": topic,
            "TOPIC_SCHEMAS": f"{topic}=bytes",
            "WRITER": "s3",
            "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
            "KAFKA_SESSION_TIMEOUT_MS": "6000",
            "BATCH_MAX_MESSAGES": "250",
            "BATCH_MAX_WAIT_MS": "100",
            "S3_PREFIX": prefix,
            "S3_FLUSH_INTERVAL_S": "0.5",
            "PYTHONPATH": str(ROOT),
            **s3.env(BUCKET),
            **extra,
        }
    )


def check_exactly_once(
    stored: dict[str, bytes], ends: dict[int, int], topic: str
) -> dict[int, list[tuple[int, int]]]:
    """Every record in exactly one object, objects of a partition tiling its offsets."""
    ranges: dict[int, list[tuple[int, int]]] = {}
    values: dict[int, list[bytes | None]] = {}
    for name, body in stored.items():
        partition = int(name.rsplit("/", 2)[1])
        first, last = offsets_of(name) or (-1, -1)
        ranges.setdefault(partition, []).append((first, last))
        lines = raw_lines(body)
        assert len(lines) == last - first + 1, f"{name} holds {len(lines)} lines"
        values.setdefault(partition, []).extend(v for _, v in lines)
    for partition, end in ends.items():
        spans = sorted(ranges[partition])
        assert spans[0][0] == 0 and spans[-1][1] == end - 1, spans
        for (_, last), (first, _) in zip(spans, spans[1:], strict=False):
            assert first == last + 1, f"partition {partition}: gap or overlap in {spans}"
        assert values[partition] == [f"record {partition}/{o}".encode() for o in range(end)]
    return ranges


def test_10k_records_through_the_connector(
    kafka: KafkaBroker, s3: S3ProxyServer, unique: str
) -> None:
    topic, group, prefix = f"s3-{unique}", f"s3-{unique}", f"e2e-{unique}"
    ends = produce_raw(kafka, topic, 3334)
    env = s3_env(kafka, s3, topic, group, prefix, S3_OBJECT_MAX_BYTES=str(64 * 1024))
    done = run_connector("run", "--until-caught-up", env=env)
    assert done.returncode == 0, done.stderr
    assert "caught up: 10002/10002 records" in done.stderr

    stored = _sync_objects(s3, prefix)
    check_exactly_once(stored, ends, topic)
    assert sorted(stored) == sorted(s3.files(BUCKET, prefix))
    table = consumer_group_offsets(kafka.bootstrap, group)
    assert {p: c for (t, p), (c, _) in table.items() if t == topic} == ends


def test_objects_accumulate_several_batches(
    kafka: KafkaBroker, s3: S3ProxyServer, unique: str
) -> None:
    topic, group, prefix = f"s3acc-{unique}", f"s3acc-{unique}", f"acc-{unique}"
    ends = produce_raw(kafka, topic, 1000)
    env = s3_env(
        kafka, s3, topic, group, prefix,
        BATCH_MAX_MESSAGES="50", S3_FLUSH_INTERVAL_S="3600",
        S3_OBJECT_MAX_BYTES=str(1024 * 1024),
    )  # fmt: skip
    done = run_connector("run", "--until-caught-up", env=env)
    assert done.returncode == 0, done.stderr
    stored = _sync_objects(s3, prefix)
    check_exactly_once(stored, ends, topic)
    # 3000 records polled 50 at a time, but far below 1 MiB: one flush at the end.
    assert len(stored) == 3, list(stored)


def test_kill_9_between_upload_and_commit_then_restart(
    kafka: KafkaBroker, s3: S3ProxyServer, unique: str, tmp_path: Path
) -> None:
    topic, group, prefix = f"s3kill-{unique}", f"s3kill-{unique}", f"kill-{unique}"
    ends = produce_raw(kafka, topic, 2000)
    gate = tmp_path / "gate"
    gate.mkdir()
    hold = AnswerHold(s3.port)
    env = s3_env(
        kafka, s3, topic, group, prefix,
        S3_ENDPOINT_URL=hold.endpoint, S3_OBJECT_MAX_BYTES="1024", BATCH_MAX_MESSAGES="100",
        TRANSFORM_MODULES="tests.fixtures.gate", TRANSFORMS="gate",
        GATE_DIR=str(gate), GATE_PARTITION="0", GATE_OFFSET="1000",
    )  # fmt: skip
    process = subprocess.Popen(
        connector_command("run", "--until-caught-up"),
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_for(lambda: (gate / "reached").exists(), timeout=60, what="the gate")
        hold.hold()
        stored_at_hold = len(s3.files(BUCKET, prefix))
        (gate / "open").touch()
        wait_for(
            lambda: len(s3.files(BUCKET, prefix)) > stored_at_hold,
            timeout=60,
            what="an upload S3 stored but whose answer never arrived",
        )
        process.kill()
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)
        hold.close()
    assert process.returncode == -signal.SIGKILL
    table = consumer_group_offsets(kafka.bootstrap, group)
    before = {p: c or 0 for (t, p), (c, _) in table.items() if t == topic}
    assert sum(before.values()) < sum(ends.values()), "the kill must land mid-run"

    restarted = run_connector("run", "--until-caught-up", env={**env, **s3.env(BUCKET)})
    assert restarted.returncode == 0, restarted.stderr
    assert "already exist" in restarted.stderr, "the replay never met a leftover object"
    check_exactly_once(_sync_objects(s3, prefix), ends, topic)


def _sync_objects(s3: S3ProxyServer, prefix: str) -> dict[str, bytes]:
    return asyncio.run(objects(s3, prefix))


def test_config_check_shows_no_secret(s3: S3ProxyServer, unique: str, tmp_path: Path) -> None:
    env = connector_env(
        CONNECTOR_NAME="audit",
        TOPICS="audit",
        TOPIC_SCHEMAS="audit=edge.v1.ZoneSettingsChanged",
        PROTO_DESCRIPTOR_SET=str(EDGE_DESCRIPTORS),
        WRITER="r2",
        S3_REGION="auto",
        S3_PREFIX="/logs/",
        **{k: v for k, v in s3.env(BUCKET).items() if k != "S3_REGION"},
    )
    checked = run_connector("check", env=env)
    assert checked.returncode == 0, checked.stderr
    assert f"  S3_BUCKET={BUCKET}\n  S3_PREFIX=logs\n" in checked.stdout
    assert "S3_REGION=auto" in checked.stdout
    assert s3.secret_key not in checked.stdout + checked.stderr

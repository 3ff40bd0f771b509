"""`connector check --connect` against the real broker: each probe's line and exit code,
and nothing written or committed by the check (no group offsets, no dead-letter topic
created although DLQ_CREATE=true, the writer's target empty)."""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Iterator

import pytest
import redis
from aiokafka.admin import AIOKafkaAdminClient

from harness.kafka import KafkaBroker, create_topic, list_topics_async, run_sync
from harness.kcat import produce
from harness.ports import free_port
from harness.redis import RedisServer
from harness.samples import zone_events
from harness.secure_kafka import SecureKafkaBroker
from tests.conftest import EDGE_DESCRIPTORS, ROOT, connector_env, run_connector

pytestmark = pytest.mark.integration

TYPE = "edge.v1.ZoneSettingsChanged"
OTHER = "application/x-protobuf; messageType=edge.v1.ZoneDeleted"
USER, PASSWORD = "checker", f"check-pw-{uuid.uuid4().hex[:12]}"


def check_env(
    bootstrap: str, name: str, topics: list[str], kv_url: str, **extra: str
) -> dict[str, str]:
    settings = {
        "CONNECTOR_NAME": name,
        "TOPICS": ",".join(topics),
        "TOPIC_SCHEMAS": ",".join(f"{t}={TYPE}" for t in topics),
        "PROTO_DESCRIPTOR_SET": str(EDGE_DESCRIPTORS),
        "TRANSFORMS": "pf_edge",
        "KV_URL": kv_url,
        "KV_KEY_PREFIX": f"{name}:",
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "ON_ERROR": "dlq",
        "DLQ_CREATE": "true",
        "PYTHONPATH": str(ROOT),
    }
    return connector_env(**{**settings, **extra})


def connect(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_connector("check", "--connect", "--deadline", "40", *args, env=env, timeout=120)


def probes(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """`probe -> line` for each `ok|fail <probe>: <detail>` line printed."""
    found = {}
    for line in done.stdout.splitlines():
        match = re.match(r"(ok|fail) ([^:]+): ", line)
        if match:
            found[match.group(2)] = line
    return found


def committed(bootstrap: str, group: str) -> dict[object, object]:
    async def read() -> dict[object, object]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(group)
            return {tp: meta for tp, meta in offsets.items() if meta.offset >= 0}
        finally:
            await admin.close()

    return run_sync(read, timeout=60)


def assert_untouched(bootstrap: str, name: str, redis_url: str | None = None) -> None:
    assert committed(bootstrap, name) == {}
    assert f"{name}.dlq" not in run_sync(lambda: list_topics_async(bootstrap), timeout=60)
    if redis_url is not None:
        client = redis.Redis.from_url(redis_url)
        try:
            assert list(client.scan_iter(f"{name}:*")) == []
        finally:
            client.close()


def filled_topic(bootstrap: str, name: str, good: int, other: int = 0) -> None:
    create_topic(bootstrap, name, partitions=3)
    events = list(zone_events(good + other))
    produce(bootstrap, name, [(e.partition, e.key, e.value) for e in events[:good]])
    if other:
        rows = [(e.partition, e.key, e.value) for e in events[good:]]
        produce(bootstrap, name, rows, headers=[(b"content-type", OTHER.encode())])


def test_a_healthy_setup_is_all_ok(
    kafka: KafkaBroker, redis_server: RedisServer, unique: str
) -> None:
    name = f"check-ok-{unique}"
    filled_topic(kafka.bootstrap, f"in-{unique}", 150)
    done = connect(check_env(kafka.bootstrap, name, [f"in-{unique}"], redis_server.url))
    assert done.returncode == 0, done.stdout + done.stderr
    found = probes(done)
    assert set(found) >= {
        "broker", f"topic in-{unique}", f"group {name}", f"decode in-{unique}", "transforms",
        f"dead letters {name}.dlq", "writer kv",
    }, done.stdout  # fmt: skip
    assert all(line.startswith("ok ") for line in found.values()), done.stdout
    assert "3 partitions, retention.ms=" in found[f"topic in-{unique}"]
    assert f"the last 100 messages decode as {TYPE}" in found[f"decode in-{unique}"]
    assert "no committed offsets on 3 partitions" in found[f"group {name}"]
    assert "100 messages -> " in found["transforms"] and "0 poison" in found["transforms"]
    assert (
        "DLQ_CREATE=true creates it at start (check does not)" in found[f"dead letters {name}.dlq"]
    )
    assert_untouched(kafka.bootstrap, name, redis_server.url)


def test_a_tenth_of_another_type_fails_the_decode_probe(
    kafka: KafkaBroker, redis_server: RedisServer, unique: str
) -> None:
    name, topic = f"check-mixed-{unique}", f"mixed-{unique}"
    filled_topic(kafka.bootstrap, topic, good=90, other=10)
    done = connect(check_env(kafka.bootstrap, name, [topic], redis_server.url))
    assert done.returncode == 1, done.stdout + done.stderr
    line = probes(done)[f"decode {topic}"]
    assert line.startswith(
        f"fail decode {topic}: 10 of the last 100 messages do not decode as {TYPE}"
    )
    assert f"'{OTHER}' x10" in line
    assert probes(done)["transforms"].startswith("ok transforms: 90 messages -> ")
    assert_untouched(kafka.bootstrap, name, redis_server.url)


def test_a_missing_topic(kafka: KafkaBroker, redis_server: RedisServer, unique: str) -> None:
    name = f"check-missing-{unique}"
    filled_topic(kafka.bootstrap, f"here-{unique}", 10)
    topics = [f"here-{unique}", f"absent-{unique}"]
    done = connect(check_env(kafka.bootstrap, name, topics, redis_server.url))
    assert done.returncode == 1, done.stdout + done.stderr
    found = probes(done)
    assert found[f"topic absent-{unique}"] == (
        f"fail topic absent-{unique}: does not exist (the connector never creates its topics)"
    )
    assert found[f"topic here-{unique}"].startswith("ok ")
    assert f"absent-{unique}" not in run_sync(lambda: list_topics_async(kafka.bootstrap), 60)
    assert_untouched(kafka.bootstrap, name, redis_server.url)


def test_a_writer_whose_server_is_down(kafka: KafkaBroker, unique: str) -> None:
    name = f"check-down-{unique}"
    filled_topic(kafka.bootstrap, f"in-{unique}", 20)
    down = f"redis://127.0.0.1:{free_port()}/0"
    done = connect(check_env(kafka.bootstrap, name, [f"in-{unique}"], down))
    assert done.returncode == 1, done.stdout + done.stderr
    line = probes(done)["writer kv"]
    assert line.startswith("fail writer kv: "), line
    assert "127.0.0.1" in line
    assert all(v.startswith("ok ") for k, v in probes(done).items() if k != "writer kv")
    assert_untouched(kafka.bootstrap, name)


def test_bad_configuration_exits_2_before_connecting(unique: str) -> None:
    env = check_env("127.0.0.1:1", f"c-{unique}", ["t"], "redis://127.0.0.1:1/0")
    done = connect({**env, "BATCH_MAX_MESSAGES": "many"})
    assert done.returncode == 2
    assert "config error: BATCH_MAX_MESSAGES" in done.stderr and not probes(done)


# ------------------------------------------------------------------- a secured broker


@pytest.fixture(scope="module")
def secure() -> Iterator[SecureKafkaBroker]:
    broker = SecureKafkaBroker(users={USER: PASSWORD})
    broker.start()
    try:
        yield broker
    finally:
        broker.close()


def test_a_wrong_sasl_password(secure: SecureKafkaBroker, unique: str) -> None:
    name = f"check-sasl-{unique}"
    wrong = f"wrong-{uuid.uuid4().hex[:12]}"
    env = check_env(
        "unused:1", name, [f"in-{unique}"], "redis://127.0.0.1:1/0",
        **secure.client_env("SASL_SSL", user=USER, password=wrong),
    )  # fmt: skip
    done = connect(env)
    assert done.returncode == 1, done.stdout + done.stderr
    line = probes(done)["broker"]
    assert line.startswith(f"fail broker: kafka: authentication failed for user {USER!r}"), line
    assert "KAFKA_SASL_PASSWORD" in line
    assert wrong not in done.stdout + done.stderr
    assert [k for k in probes(done) if k.startswith(("topic", "decode", "group"))] == []


def test_the_right_sasl_password(secure: SecureKafkaBroker, unique: str) -> None:
    topic = f"in-{unique}"
    create_topic(secure.bootstrap, topic, partitions=1)
    secure.grant([USER], ["READ", "DESCRIBE"], topics=[topic], groups=[f"check-{unique}"])
    env = check_env(
        "unused:1", f"check-{unique}", [topic], f"redis://127.0.0.1:{free_port()}/0",
        ON_ERROR="fail", **secure.client_env("SASL_SSL", user=USER),
    )  # fmt: skip
    done = connect(env)
    line = probes(done)["broker"]
    assert line.startswith("ok broker: ") and "SCRAM-SHA-512 as 'checker' accepted" in line, line
    assert probes(done)[f"topic {topic}"].startswith("ok "), done.stdout

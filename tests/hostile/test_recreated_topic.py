"""A topic deleted and created again under the same name, against a real broker:

its offsets start again at 0, below the positions the store kept for the old topic (LMDB
per partition, Redis per key). Those positions name the topic by its id (Kafka's topic id,
from the reader), so the new topic has none: every record of it is stored, none is skipped
as a replay of the old one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from harness.kafka import KafkaBroker, consumer_group_offsets, create_topic, run_sync
from harness.kcat import produce
from harness.redis import RedisServer
from tests.conftest import ROOT, connector_env, run_connector
from tests.integration.test_runner_kafka import read_lmdb
from tests.waiting import wait_for
from writers.kv.redis_store import RedisView
from writers.kv.settings import KVSettings


def delete_topic(bootstrap: str, name: str) -> None:
    """Delete `name` and wait until the cluster no longer lists it."""

    async def delete() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
        try:
            await admin.start()
            await admin.delete_topics([name], timeout_ms=30000)
        finally:
            await admin.close()

    async def listed() -> bool:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
        try:
            await admin.start()
            described = cast(list[dict[str, Any]], await admin.describe_topics())
        finally:
            await admin.close()
        return any(t["topic"] == name for t in described)

    run_sync(delete, 45)
    wait_for(lambda: not run_sync(listed, 15), timeout=60, what=f"topic {name} to be deleted")


def recreate_topic(bootstrap: str, name: str) -> None:
    """Create `name` again; the broker may refuse while it still removes the old one."""

    def created() -> bool:
        try:
            create_topic(bootstrap, name, partitions=1)
        except Exception as exc:  # noqa: BLE001 - "already exists" until deletion completes
            if "error 36" not in str(exc):
                raise
            return False
        return True

    wait_for(created, timeout=60, what=f"topic {name} to be created again", interval=0.5)


@pytest.mark.parametrize("store", ["lmdb", "redis"])
def test_a_recreated_topic_is_read_into_the_store_again(
    kafka: KafkaBroker, redis_server: RedisServer, unique: str, tmp_path: Path, store: str
) -> None:
    topic = name = f"rc-{unique}"
    create_topic(kafka.bootstrap, topic, partitions=1)
    create_topic(kafka.bootstrap, f"{name}.dlq", partitions=1)
    kv = (
        {"KV_URL": redis_server.url, "KV_KEY_PREFIX": f"{unique}:"}
        if store == "redis"
        else {"KV_URL": f"lmdb:{tmp_path / 'kv'}", "KV_SYNC": "false"}
    )
    env = connector_env(
        CONNECTOR_NAME=name,
        TOPICS=topic,
        TOPIC_SCHEMAS=f"{topic}=bytes",
        TRANSFORMS="",
        KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap,
        BATCH_MAX_WAIT_MS="100",
        PYTHONPATH=str(ROOT),
        **kv,
    )

    produce(kafka.bootstrap, topic, [(0, f"k{i}".encode(), b"old") for i in range(100)])
    first = run_connector("run", "--until-caught-up", env=env, timeout=90)
    assert first.returncode == 0, first.stderr

    delete_topic(kafka.bootstrap, topic)
    recreate_topic(kafka.bootstrap, topic)
    # The new topic's offsets 0-49 carry k99..k50, which the old one wrote at 99..50.
    produce(kafka.bootstrap, topic, [(0, f"k{99 - i}".encode(), b"new") for i in range(50)])
    second = run_connector("run", "--until-caught-up", env=env, timeout=90)
    assert second.returncode == 0, second.stderr

    if store == "redis":
        view = RedisView(KVSettings(url=redis_server.url, key_prefix=f"{unique}:"))
        try:
            stored = dict(view.items())
        finally:
            view.close()
    else:
        stored = read_lmdb(tmp_path / "kv")
    assert stored == {f"k{i}".encode(): b"old" if i < 50 else b"new" for i in range(100)}
    assert "skipped as a replay" not in second.stderr
    offsets = consumer_group_offsets(kafka.bootstrap, name)
    assert {tp: c for tp, (c, _end) in offsets.items()} == {(topic, 0): 50}

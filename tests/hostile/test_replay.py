"""`connector dlq replay` after newer data was stored, against a real broker:

Key K: `v1-old` fails in the transform (dead-lettered), `v2-new` is stored; once the
transform is fixed, `dlq replay` and a run must leave K = `v2-new`, while a dead letter of
a key with nothing newer (J = `j1-old`) is applied. Replayed records keep the position they
were first read from (`dlq.original.*`), and the KV writers order them by it: Redis per
key, LMDB by the Kafka keys of records it did not write. When LMDB remembers no such key
(`KV_REPLAY_GUARD_KEYS=0`) it cannot order the replay and dead-letters it again, with its
first position kept, rather than overwrite; `dlq replay --as-new` then sends it as a new
record, which overwrites.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.kafka import KafkaBroker, consumer_group_offsets, create_topic
from harness.kcat import produce
from harness.redis import RedisServer
from tests.conftest import ROOT, connector_env, run_connector
from tests.integration.test_failures import consume_all
from tests.integration.test_runner_kafka import read_lmdb
from writers.kv.redis_store import RedisView
from writers.kv.settings import KVSettings

FUSSY_MODULE = """
import os

from connectors import Put, transform


@transform("fussy")
def fussy(message, ctx):
    if os.environ.get("FUSSY_FIXED") != "1" and message.endswith(b"-old"):
        raise ValueError("cannot read old values yet")
    return Put(ctx.key, message)
"""


def committed(kafka: KafkaBroker, group: str) -> dict[tuple[str, int], int | None]:
    return {tp: c for tp, (c, _end) in consumer_group_offsets(kafka.bootstrap, group).items()}


def run(env: dict[str, str], *args: str) -> str:
    done = run_connector(*args, env=env, timeout=90)
    assert done.returncode == 0, done.stderr
    return done.stderr


@pytest.mark.parametrize("store", ["lmdb", "redis", "lmdb-remembering-nothing"])
def test_a_replayed_dead_letter_never_overwrites_newer_data(
    kafka: KafkaBroker, redis_server: RedisServer, unique: str, tmp_path: Path, store: str
) -> None:
    topic = name = f"replay-{unique}"
    create_topic(kafka.bootstrap, topic, partitions=1)
    create_topic(kafka.bootstrap, f"{name}.dlq", partitions=1)
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / f"fussy_{unique}.py").write_text(FUSSY_MODULE)
    kv = (
        {"KV_URL": redis_server.url, "KV_KEY_PREFIX": f"{unique}:"}
        if store == "redis"
        else {"KV_URL": f"lmdb:{tmp_path / 'kv'}", "KV_SYNC": "false"}
    )
    if store == "lmdb-remembering-nothing":
        kv["KV_REPLAY_GUARD_KEYS"] = "0"
    env = connector_env(
        CONNECTOR_NAME=name,
        TOPICS=topic,
        TOPIC_SCHEMAS=f"{topic}=bytes",
        KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap,
        TRANSFORM_MODULES=f"fussy_{unique}",
        TRANSFORMS="fussy",
        BATCH_MAX_WAIT_MS="100",
        PYTHONPATH=f"{ROOT}:{modules}",
        **kv,
    )

    produce(kafka.bootstrap, topic, [(0, b"K", b"v1-old"), (0, b"J", b"j1-old"), (0, b"X", b"x1")])
    run(env, "run", "--until-caught-up")
    produce(kafka.bootstrap, topic, [(0, b"K", b"v2-new")])
    run(env, "run", "--until-caught-up")
    assert "replayed 2 dead letters" in run(env, "dlq", "replay")
    run({**env, "FUSSY_FIXED": "1"}, "run", "--until-caught-up")

    if store == "redis":
        view = RedisView(KVSettings(url=redis_server.url, key_prefix=f"{unique}:"))
        try:
            stored = dict(view.items())
        finally:
            view.close()
    else:
        stored = read_lmdb(tmp_path / "kv")
    assert stored[b"K"] == b"v2-new"
    assert stored[b"X"] == b"x1"
    assert committed(kafka, name) == {(topic, 0): 6}
    replays = consume_all(kafka.bootstrap, topic, 6)[4:]
    assert [dict(m.headers)["dlq.original.offset"] for m in replays] == [b"0", b"1"]
    assert all("dlq.stage" not in dict(m.headers) for m in replays)

    unordered = store == "lmdb-remembering-nothing"
    letters = consume_all(kafka.bootstrap, f"{name}.dlq", 4 if unordered else 2)
    if unordered:
        # Neither replay could be ordered: both are dead letters again, first positions kept.
        assert b"J" not in stored
        again = letters[2:]
        assert [(m.key, dict(m.headers)["dlq.original.offset"]) for m in again] == [
            (b"K", b"0"),
            (b"J", b"1"),
        ]
        assert all(dict(m.headers)["dlq.stage"] == b"write" for m in again)
        # The operator's way out: send them as new records, which overwrite what is stored.
        assert "replayed 2 dead letters" in run(env, "dlq", "replay", "--as-new")
        run({**env, "FUSSY_FIXED": "1"}, "run", "--until-caught-up")
        assert read_lmdb(tmp_path / "kv") == {b"K": b"v1-old", b"J": b"j1-old", b"X": b"x1"}
        assert committed(kafka, name) == {(topic, 0): 8}
    else:
        assert stored[b"J"] == b"j1-old"
        assert len(letters) == 2

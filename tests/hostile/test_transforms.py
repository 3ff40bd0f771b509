"""Hostile transforms against `connector run` on a real broker:

- a result that cannot be stored (`object()`, a `Put` with an int key or a set value, a
  generator that raises part-way) is poison at the transform stage for that record only:
  dead-lettered with its provenance, the rest of the batch written, everything committed;
- running out of memory or file descriptors in a transform is no record's fault: the
  connector stops (exit 1, one fatal line) with nothing committed past it and nothing
  dead-lettered, and a restart resumes without loss.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.kafka import KafkaBroker, consumer_group_offsets, create_topic
from harness.kcat import end_offsets, produce
from tests.conftest import ROOT, connector_env, run_connector
from tests.integration.test_failures import consume_all
from tests.integration.test_runner_kafka import read_lmdb

HOSTILE_MODULE = """
import errno
import os

from connectors import Put, transform


def _generator(ctx):
    yield Put(ctx.key + b"-first", b"1")
    raise RuntimeError("generator failed part-way")


@transform("hostile")
def hostile(message, ctx):
    if os.environ.get("HOSTILE_OFF") != "1":
        if message == b"object":
            return object()
        if message == b"int-key":
            return Put(1, b"v")
        if message == b"set-value":
            return Put(ctx.key, {1, 2})
        if message == b"generator":
            return _generator(ctx)
        if message == b"memory":
            raise MemoryError()
        if message == b"emfile":
            raise OSError(errno.EMFILE, "Too many open files")
    return Put(ctx.key, message.upper())
"""

COUNT = 20


def hostile_env(
    kafka: KafkaBroker, name: str, topic: str, tmp: Path, **extra: str
) -> dict[str, str]:
    """A raw-bytes connector whose transform `hostile` acts on its record's value."""
    modules = tmp / "modules"
    modules.mkdir(exist_ok=True)
    (modules / f"hostile_{name.replace('-', '_')}.py").write_text(HOSTILE_MODULE)
    return connector_env(
        CONNECTOR_NAME=name,
        TOPICS=topic,
        TOPIC_SCHEMAS=f"{topic}=bytes",
        KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap,
        KV_URL=f"lmdb:{tmp / 'kv'}",
        KV_SYNC="false",
        TRANSFORM_MODULES=f"hostile_{name.replace('-', '_')}",
        TRANSFORMS="hostile",
        RETRY_INITIAL_MS="50",
        RETRY_MAX_MS="200",
        PYTHONPATH=f"{ROOT}:{modules}",
        **extra,
    )


def load_topic(kafka: KafkaBroker, name: str, values: dict[int, bytes]) -> str:
    """A one-partition topic of COUNT records `k<n>` (value `v<n>` unless given), and
    the connector's dead-letter topic (topics are not created by naming them)."""
    topic = f"{name}-in"
    create_topic(kafka.bootstrap, topic, partitions=1)
    create_topic(kafka.bootstrap, f"{name}.dlq", partitions=1)
    rows = [(0, f"k{n}".encode(), values.get(n, f"v{n}".encode())) for n in range(COUNT)]
    produce(kafka.bootstrap, topic, rows)
    return topic


def committed(kafka: KafkaBroker, group: str, topic: str) -> int | None:
    offsets = consumer_group_offsets(kafka.bootstrap, group)
    return offsets.get((topic, 0), (None, 0))[0]


def stored_by_hostile(indices: range | list[int]) -> dict[bytes, bytes]:
    return {f"k{n}".encode(): f"V{n}".encode() for n in indices}


@pytest.mark.parametrize("kind", ["object", "int-key", "set-value", "generator"])
def test_a_result_that_cannot_be_stored_is_poison_for_that_record_only(
    kafka: KafkaBroker, unique: str, tmp_path: Path, kind: str
) -> None:
    name = f"result-{unique}"
    bad = 10
    topic = load_topic(kafka, name, {bad: kind.encode()})
    done = run_connector(
        "run", "--until-caught-up", env=hostile_env(kafka, name, topic, tmp_path), timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    good = [n for n in range(COUNT) if n != bad]
    assert read_lmdb(tmp_path / "kv") == stored_by_hostile(good), "the rest of the batch"
    (letter,) = consume_all(kafka.bootstrap, f"{name}.dlq", 1)
    headers = {k: v for k, v in letter.headers}
    assert headers["dlq.stage"] == b"transform:hostile"
    assert headers["dlq.original.topic"] == topic.encode()
    assert (headers["dlq.original.partition"], headers["dlq.original.offset"]) == (b"0", b"10")
    assert (letter.key, letter.value) == (b"k10", kind.encode())
    assert committed(kafka, name, topic) == COUNT


@pytest.mark.parametrize(
    ("kind", "said"),
    [("memory", "MemoryError"), ("emfile", "Too many open files")],
)
def test_running_out_of_resources_stops_with_nothing_committed_past_it(
    kafka: KafkaBroker, unique: str, tmp_path: Path, kind: str, said: str
) -> None:
    name = f"exhausted-{unique}"
    bad = 12
    topic = load_topic(kafka, name, {bad: kind.encode()})
    env = hostile_env(kafka, name, topic, tmp_path, BATCH_MAX_MESSAGES="5")
    stopped = run_connector("run", "--until-caught-up", env=env, timeout=120)
    assert stopped.returncode == 1, stopped.stderr[-3000:]
    fatal = [line for line in stopped.stderr.splitlines() if line.startswith("fatal:")]
    assert len(fatal) == 1 and said in fatal[0] and f"{topic}[0]@{bad}" in fatal[0], fatal
    assert "Traceback" not in stopped.stderr, stopped.stderr[-3000:]
    at_stop = committed(kafka, name, topic)
    assert at_stop is None or at_stop <= bad, f"committed {at_stop}, past offset {bad}"
    stored = read_lmdb(tmp_path / "kv")
    assert set(stored) <= {f"k{n}".encode() for n in range(bad)}, sorted(stored)
    assert end_offsets(kafka.bootstrap, f"{name}.dlq", [0]) == {0: 0}, "nothing dead-lettered"

    env["HOSTILE_OFF"] = "1"  # the leak fixed: the next run replays from the commit
    resumed = run_connector("run", "--until-caught-up", env=env, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected = stored_by_hostile([n for n in range(COUNT) if n != bad])
    expected[f"k{bad}".encode()] = kind.upper().encode()
    assert read_lmdb(tmp_path / "kv") == expected
    assert committed(kafka, name, topic) == COUNT

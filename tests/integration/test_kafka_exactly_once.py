"""`KAFKA_OUTPUT_EXACTLY_ONCE` on the real broker: 50,000 records through a connector killed
with SIGKILL five times at random points, restarted each time until caught up. With the
option, a `read_committed` consumer of the output sees each input record's output exactly
once; without it, the same run shows the duplicates the option prevents (killed again, up
to ten more times, until a kill landed mid-batch). Plus fencing: a
writer whose partition's transactional id another instance initialised stops."""

from __future__ import annotations

import asyncio
import random
import subprocess
from collections import Counter
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from connectors import Batch, Entry, FatalError, Record, WriteBatch, WriterContext
from harness.kafka import KafkaBroker, consumer_group_offsets, create_topic
from harness.kcat import end_offsets, produce
from tests.conftest import ROOT, connector_command, connector_env, run_connector
from tests.waiting import wait_for
from writers.kafka import PLUGIN, KafkaWriterSettings

pytestmark = pytest.mark.integration

RECORDS = 50_000
PARTITIONS = 4
KILLS = 5
EXTRA_KILLS = 10


def load(kafka: KafkaBroker, name: str) -> tuple[str, str]:
    source, out = f"eos-in-{name}", f"eos-out-{name}"
    create_topic(kafka.bootstrap, source, partitions=PARTITIONS)
    create_topic(kafka.bootstrap, out, partitions=PARTITIONS)
    produce(
        kafka.bootstrap,
        source,
        [(i % PARTITIONS, b"k%d" % i, b"v%d" % i) for i in range(RECORDS)],
    )
    return source, out


def env_for(kafka: KafkaBroker, source: str, out: str, group: str, **extra: str) -> dict[str, str]:
    return connector_env(
        CONNECTOR_NAME=group,
        TOPICS=source,
        TOPIC_SCHEMAS=f"{source}=bytes",
        WRITER="kafka",
        KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap,
        KAFKA_GROUP_INSTANCE_ID=f"{group}-0",  # a restart takes the place of the killed one
        KAFKA_SESSION_TIMEOUT_MS="6000",
        KAFKA_OUTPUT_TOPIC=out,
        KAFKA_OUTPUT_TYPE="bytes",
        BATCH_MAX_MESSAGES="2000",
        BATCH_MAX_WAIT_MS="100",
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
        **extra,
    )


def log_end(kafka: KafkaBroker, topic: str) -> int:
    return sum(end_offsets(kafka.bootstrap, topic, range(PARTITIONS)).values())


def run_with_kills(
    kafka: KafkaBroker, env: dict[str, str], out: str, *, mid_batch: str | None = None
) -> list[int]:
    """Start the connector, SIGKILL it once the output's log end grew by a random 3,000 to
    7,000 since it started (while it produces: with 2,000-record batches most of its time
    is spent writing, so the kill mostly lands mid-batch), restart; `KILLS` times, then run
    it until caught up. Returns the log ends at which the kills landed.

    With `mid_batch` (the group, at-least-once only), a kill counts as mid-batch when the
    output holds more records not covered by the group's commits after it than before it
    (measured once the process is dead); it goes on killing, up to `EXTRA_KILLS` more
    times, until one did: a run whose kills all landed between batches shows nothing."""
    steps = random.Random(515)
    landed: list[int] = []
    excess = mid = 0
    while len(landed) < KILLS or (mid_batch and not mid and len(landed) < KILLS + EXTRA_KILLS):
        # further kills come sooner: the 50,000 records must outlast them
        step = steps.randrange(3_000, 7_000) if len(landed) < KILLS else steps.randrange(500, 1_500)
        target = log_end(kafka, out) + step
        process = subprocess.Popen(
            connector_command("run", "--until-caught-up"),
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            wait_for(
                lambda: process.poll() is not None or log_end(kafka, out) >= target,  # noqa: B023
                timeout=120,
                what=f"the output to pass {target}",
                interval=0.01,
            )
            assert process.poll() is None, f"finished before the kill: {process.stderr}"
            process.kill()
            landed.append(log_end(kafka, out))
        finally:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=30)
        assert process.returncode == -9
        if mid_batch:
            now = log_end(kafka, out) - caught_up(kafka, mid_batch, env["TOPICS"])
            mid += now > excess
            excess = now
    done = run_connector("run", "--until-caught-up", env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return landed


async def read_committed(bootstrap: str, topic: str) -> list[bytes]:
    """The `connector-source` header of every record a read_committed consumer sees."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)  # the last stable offsets
        found: list[bytes] = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found.extend(dict(r.headers)["connector-source"] for r in records)
        return found
    finally:
        await consumer.stop()


def tally(kafka: KafkaBroker, source: str, out: str) -> tuple[int, int]:
    """(duplicates, missing) of the output, per input record."""
    seen = Counter(
        origin.rsplit(b"/", 1)[0] for origin in asyncio.run(read_committed(kafka.bootstrap, out))
    )
    expected = {f"{source}/{i % PARTITIONS}/{i // PARTITIONS}".encode() for i in range(RECORDS)}
    assert set(seen) <= expected
    return sum(c - 1 for c in seen.values()), len(expected - set(seen))


def caught_up(kafka: KafkaBroker, group: str, source: str) -> int:
    table = consumer_group_offsets(kafka.bootstrap, group)
    return sum(c or 0 for (t, _), (c, _) in table.items() if t == source)


def test_exactly_once_across_five_kills(kafka: KafkaBroker, unique: str) -> None:
    source, out = load(kafka, f"on-{unique}")
    group = f"eos-on-{unique}"
    env = env_for(kafka, source, out, group, KAFKA_OUTPUT_EXACTLY_ONCE="true")
    landed = run_with_kills(kafka, env, out)
    duplicates, missing = tally(kafka, source, out)
    print(
        f"exactly-once: kills at output log ends {landed}: "
        f"{duplicates} duplicates, {missing} missing"
    )
    assert (duplicates, missing) == (0, 0)
    assert caught_up(kafka, group, source) == RECORDS


def test_without_the_option_the_same_run_duplicates(kafka: KafkaBroker, unique: str) -> None:
    source, out = load(kafka, f"off-{unique}")
    group = f"eos-off-{unique}"
    landed = run_with_kills(kafka, env_for(kafka, source, out, group), out, mid_batch=group)
    duplicates, missing = tally(kafka, source, out)
    print(
        f"at-least-once: kills at output log ends {landed}: "
        f"{duplicates} duplicates, {missing} missing"
    )
    assert missing == 0
    assert duplicates > 0, "a kill landed mid-batch: what was produced but not committed repeats"
    assert caught_up(kafka, group, source) == RECORDS


# ------------------------------------------------------------------------------ fencing


def eos_writer(kafka: KafkaBroker, out: str, name: str) -> Any:
    settings = KafkaWriterSettings(
        bootstrap_servers=kafka.bootstrap,
        output_topic=out,
        output_type="bytes",
        output_exactly_once=True,
    )
    return PLUGIN.build(settings, WriterContext(connector_name=name, group_id=name))


def one_batch(source: str, offsets: range) -> WriteBatch:
    records = tuple(Record(source, 0, o, b"k", b"v%d" % o) for o in offsets)
    return WriteBatch(Batch(records), tuple(Entry(r, r.key, r.value) for r in records))


async def test_a_writer_fenced_by_the_partitions_new_owner_stops_uncommitted(
    kafka: KafkaBroker, unique: str
) -> None:
    source, out = f"fence-in-{unique}", f"fence-out-{unique}"
    create_topic(kafka.bootstrap, source, partitions=1)
    create_topic(kafka.bootstrap, out, partitions=1)
    name = f"fence-{unique}"
    zombie, owner = eos_writer(kafka, out, name), eos_writer(kafka, out, name)
    await zombie.start()
    await owner.start()
    try:
        await zombie.write(one_batch(source, range(0, 10)))  # open, not committed
        await owner.write(one_batch(source, range(0, 10)))  # same id: the zombie is fenced
        with pytest.raises(
            FatalError, match=f"another instance owns transactional id '{name}-{source}-0'"
        ):
            await zombie.commit({(source, 0): 10})
        await owner.commit({(source, 0): 10})
    finally:
        await zombie.close()
        await owner.close()
    seen = Counter(await read_committed_one(kafka.bootstrap, out))
    assert seen == Counter({f"{source}/0/{o}/0".encode(): 1 for o in range(10)})
    table = consumer_group_offsets(kafka.bootstrap, name)
    assert table[(source, 0)][0] == 10


async def read_committed_one(bootstrap: str, topic: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        found: list[bytes] = []
        while await consumer.position(tp) < end:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found.extend(dict(r.headers)["connector-source"] for r in records)
        return found
    finally:
        await consumer.stop()


def test_exactly_once_refuses_another_output_cluster(kafka: KafkaBroker) -> None:
    env = connector_env(
        CONNECTOR_NAME="c", TOPICS="t", TOPIC_SCHEMAS="t=bytes", WRITER="kafka",
        KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap, KAFKA_OUTPUT_TOPIC="o", KAFKA_OUTPUT_TYPE="bytes",
        KAFKA_OUTPUT_BOOTSTRAP_SERVERS="elsewhere:9092", KAFKA_OUTPUT_EXACTLY_ONCE="true",
    )  # fmt: skip
    checked = run_connector("check", env=env)
    assert checked.returncode == 2
    assert (
        "KAFKA_OUTPUT_EXACTLY_ONCE=true needs the output on the input's cluster" in checked.stderr
    )

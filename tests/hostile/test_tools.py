"""The `connector produce` and `connector dlq replay` tools against a real broker that
creates no topic by itself:

- a dead letter cut to fit the dead-letter topic (`dlq.truncated`, `dlq.truncated.key`)
  is not replayed: one `warning:` line each naming where it lies and where it came from,
  counted in the summary, exit 1; whole letters are replayed as before;
- `produce TOPIC` and `dlq replay --to TOPIC` onto a missing topic: one line at once saying
  how to create it, exit 1, nothing sent, nothing of the dead-letter topic consumed;
- a TOPIC (or `--to`) that is no topic name: exit 2, one line, before connecting.
"""

from __future__ import annotations

import subprocess
import time
from typing import Any

import pytest

from connectors.core.errors import quoted
from harness.kafka import (
    KafkaBroker,
    consumer_group_offsets,
    create_topic,
    list_topics_async,
    run_sync,
)
from harness.kcat import produce
from tests.conftest import EDGE_DESCRIPTORS, connector_command, connector_env, run_connector
from tests.integration.test_failures import consume_all

pytestmark = pytest.mark.integration

#: The size a truncated letter's value had before it was cut.
ORIGINAL_SIZE = 1_048_500


def origin(topic: str, offset: int) -> list[tuple[bytes, bytes]]:
    return [
        (b"dlq.stage", b"transform"),
        (b"dlq.original.topic", topic.encode()),
        (b"dlq.original.partition", b"0"),
        (b"dlq.original.offset", str(offset).encode()),
    ]


def letters_env(kafka: KafkaBroker, name: str) -> dict[str, str]:
    return connector_env(CONNECTOR_NAME=name, KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap)


def topics(kafka: KafkaBroker) -> set[str]:
    return run_sync(lambda: list_topics_async(kafka.bootstrap), 30)


def lines(stderr: str, prefix: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(prefix)]


def headers_of(message: Any) -> dict[str, bytes]:
    return dict(message.headers)


def test_truncated_dead_letters_are_not_replayed(kafka: KafkaBroker, unique: str) -> None:
    name, source = f"cut-{unique}", f"cut-in-{unique}"
    dlq = f"{name}.dlq"
    create_topic(kafka.bootstrap, source, partitions=1)
    create_topic(kafka.bootstrap, dlq, partitions=1)
    produce(kafka.bootstrap, dlq, [(0, b"A", b"whole")], headers=origin(source, 3))
    cut_value = [*origin(source, 4), (b"dlq.truncated", str(ORIGINAL_SIZE).encode())]
    produce(kafka.bootstrap, dlq, [(0, b"B", b"\xff" * 100)], headers=cut_value)
    cut_key = [*cut_value, (b"dlq.truncated.key", b"2000000")]
    produce(kafka.bootstrap, dlq, [(0, b"C", b"")], headers=cut_key)
    produce(kafka.bootstrap, dlq, [(0, b"D", b"also whole")], headers=origin(source, 9))

    started = time.monotonic()
    done = run_connector("dlq", "replay", env=letters_env(kafka, name), timeout=90)
    assert done.returncode == 1, done.stderr
    assert time.monotonic() - started < 30
    assert lines(done.stderr, "warning:") == [
        f"warning: dead letter {dlq} partition 0 offset 1 not replayed: cut to fit the "
        f"dead-letter topic (original value of {ORIGINAL_SIZE} bytes); the original record: "
        f"topic {source}, partition 0, offset 4",
        f"warning: dead letter {dlq} partition 0 offset 2 not replayed: cut to fit the "
        f"dead-letter topic (original value of {ORIGINAL_SIZE} bytes and key of 2000000 "
        f"bytes); the original record: topic {source}, partition 0, offset 4",
    ]
    assert f"replayed 2 dead letters from {dlq}; 2 truncated letters not replayed" in done.stderr
    assert "Traceback" not in done.stderr

    replayed = consume_all(kafka.bootstrap, source, 2)
    assert [(m.key, m.value) for m in replayed] == [(b"A", b"whole"), (b"D", b"also whole")]
    assert [headers_of(m)["dlq.original.offset"] for m in replayed] == [b"3", b"9"]
    assert all("dlq.stage" not in headers_of(m) for m in replayed)
    # Every letter was dealt with (the warnings are the record of the cut ones).
    group = consumer_group_offsets(kafka.bootstrap, f"{name}.dlq-replay")
    assert {tp: c for tp, (c, _end) in group.items()} == {(dlq, 0): 4}

    again = run_connector("dlq", "replay", env=letters_env(kafka, name), timeout=90)
    assert again.returncode == 0, again.stderr
    assert f"replayed 0 dead letters from {dlq}\n" in again.stderr


def test_produce_to_a_missing_topic_fails_at_once_saying_how_to_create_it(
    kafka: KafkaBroker, unique: str
) -> None:
    missing = f"nowhere-{unique}"
    env = connector_env(
        TOPIC_SCHEMAS=f"{missing}=edge.v1.ZoneSettingsChanged",
        PROTO_DESCRIPTOR_SET=str(EDGE_DESCRIPTORS),
        KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap,
    )
    started = time.monotonic()
    done = subprocess.run(
        connector_command("produce", missing),
        input='{"zoneId": "z1"}\n',
        env=env, capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    took = time.monotonic() - started

    assert done.returncode == 1, done.stderr
    assert lines(done.stderr, "fatal:") == [
        f"fatal: topic '{missing}' does not exist (the brokers create no topic on first use): "
        f"create it first (kafka-topics.sh --bootstrap-server {kafka.bootstrap} --create "
        f"--topic {missing} --partitions <count>)"
    ]
    assert took < 20, f"{took:.0f}s: the check must not wait for the topic"
    assert "produced" not in done.stderr
    assert missing not in topics(kafka)


def test_replay_to_a_missing_topic_fails_at_once_and_consumes_nothing(
    kafka: KafkaBroker, unique: str
) -> None:
    name, source, missing = f"to-{unique}", f"to-in-{unique}", f"to-out-{unique}"
    dlq = f"{name}.dlq"
    create_topic(kafka.bootstrap, dlq, partitions=1)
    produce(kafka.bootstrap, dlq, [(0, b"A", b"whole")], headers=origin(source, 0))
    env = letters_env(kafka, name)

    started = time.monotonic()
    done = run_connector("dlq", "replay", "--to", missing, env=env, timeout=90)
    took = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    assert lines(done.stderr, "fatal:") == [
        f"fatal: topic '{missing}' does not exist (the brokers create no topic on first use): "
        f"create it first (kafka-topics.sh --bootstrap-server {kafka.bootstrap} --create "
        f"--topic {missing} --partitions <count>)"
    ]
    assert took < 20, f"{took:.0f}s: the check must not wait for the topic"
    assert missing not in topics(kafka)
    assert consumer_group_offsets(kafka.bootstrap, f"{name}.dlq-replay") == {}

    # Once the topic exists, the letter is still there to replay.
    create_topic(kafka.bootstrap, missing, partitions=1)
    done = run_connector("dlq", "replay", "--to", missing, env=env, timeout=90)
    assert done.returncode == 0, done.stderr
    assert f"replayed 1 dead letters from {dlq}" in done.stderr
    assert [(m.key, m.value) for m in consume_all(kafka.bootstrap, missing, 1)] == [
        (b"A", b"whole")
    ]


@pytest.mark.parametrize("bad", ["two words", "a,b", "..", "x" * 250, "new\nline"])
def test_a_topic_argument_that_is_no_topic_name_is_one_config_line(
    kafka: KafkaBroker, unique: str, bad: str
) -> None:
    name = f"badname-{unique}"
    env = letters_env(kafka, name)
    produced = subprocess.run(
        connector_command("produce", bad),
        input='{"zoneId": "z1"}\n',
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    replayed = run_connector("dlq", "replay", "--to", bad, env=env, timeout=60)

    for done, argument in ((produced, "TOPIC"), (replayed, "--to")):
        assert done.returncode == 2, done.stderr
        assert done.stderr.splitlines() == [
            f"config error: {argument}: a Kafka topic name (letters, digits, '.', '_' or '-', "
            f"1-249 characters, not '.' or '..'); {quoted(bad)} is not one"
        ]
    assert consumer_group_offsets(kafka.bootstrap, f"{name}.dlq-replay") == {}

"""`connector produce TOPIC`: JSON lines in, the topic's protobuf type out, to Kafka.

The producer side of the contract, for demos, tests and backfills: each line is encoded
with the type `TOPIC_SCHEMAS` binds to the topic, so a line that does not fit the type
is refused (exit 1, line number given) before anything of it is sent. Records carry the
`content-type` header naming their type.

The topic must exist: brokers create none on first use, and a producer sending to a topic
the cluster does not know retries until its delivery timeout. TOPIC is checked as a topic
name before connecting (exit 2), and asked for once connected (`require_topic`, which
`connector dlq replay --to` uses too): a missing topic is one line saying how to create
it (exit 1), nothing sent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, UnsupportedVersionError
from google.protobuf.json_format import ParseDict, ParseError

from connectors.config.names import topic_name
from connectors.config.pipeline import schemas_for
from connectors.config.settings import KafkaSettings, RuntimeSettings, load
from connectors.core.errors import ConfigError, FatalError, Problem
from connectors.core.records import TYPE_HEADER
from connectors.kafka import describe_topics, idempotent_producer


def checked_topic(variable: str, value: str) -> str:
    """`value` if it is a topic name the brokers accept; ConfigError naming `variable`
    (the argument it came from) otherwise."""
    try:
        return topic_name(value)
    except ValueError as exc:
        raise ConfigError([Problem(variable, str(exc))]) from exc


async def require_topic(producer: AIOKafkaProducer, topic: str, kafka: KafkaSettings) -> None:
    """Return if the brokers know `topic`; FatalError saying how to create it if they do
    not, other refusals (no DESCRIBE permission) raised as the brokers' error."""
    try:
        state = (await describe_topics(producer.client, [topic])).topics.get(topic)
    except UnsupportedVersionError:  # Kafka < 2.8: metadata as aiokafka asks for it
        cluster = await producer.client.fetch_all_metadata()
        if topic not in cluster.topics():
            raise FatalError(missing_topic(topic, kafka)) from None
        return
    if state is None or state.missing:
        raise FatalError(missing_topic(topic, kafka))
    if state.error is not None:
        raise state.error(topic)


def missing_topic(topic: str, kafka: KafkaSettings) -> str:
    return (
        f"topic {topic!r} does not exist (the brokers create no topic on first use): create "
        f"it first (kafka-topics.sh --bootstrap-server {kafka.bootstrap_servers} --create "
        f"--topic {topic} --partitions <count>)"
    )


def encode_lines(
    lines: Iterable[str], message_class: Any, key_field: str | None
) -> list[tuple[bytes | None, bytes]]:
    """(key, value) per non-empty line; raises FatalError naming the first bad line."""
    encoded = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            document = json.loads(line)
            message = ParseDict(document, message_class())
        except (json.JSONDecodeError, ParseError, TypeError) as exc:
            raise FatalError(
                f"line {number}: not a {message_class.DESCRIPTOR.full_name}: {exc}"
            ) from exc
        key = None
        if key_field:
            value = document.get(key_field) if isinstance(document, dict) else None
            key = None if value is None else str(value).encode()
        encoded.append((key, message.SerializeToString(deterministic=True)))
    return encoded


async def send_all(
    kafka: KafkaSettings, topic: str, records: list[tuple[bytes | None, bytes]], type_name: str
) -> None:
    producer = idempotent_producer(kafka)
    await producer.start()
    try:
        await require_topic(producer, topic, kafka)
        header = [(TYPE_HEADER, f"application/x-protobuf; messageType={type_name}".encode())]
        futures = [await producer.send(topic, value=v, key=k, headers=header) for k, v in records]
        for future in futures:
            await future
    finally:
        await producer.stop()


def cmd_produce(
    args: argparse.Namespace, environ: Mapping[str, str], stdin: TextIO = sys.stdin
) -> int:
    checked_topic("TOPIC", args.topic)
    problems: list[Problem] = []
    env = {
        **environ,
        "TOPICS": args.topic,
        "CONNECTOR_NAME": environ.get("CONNECTOR_NAME", "producer"),
    }
    runtime = load(RuntimeSettings, env, problems)
    kafka = load(KafkaSettings, env, problems)
    schemas = schemas_for(runtime, problems) if runtime is not None else None
    if problems or runtime is None or kafka is None or schemas is None:
        raise ConfigError(problems)
    schema = schemas[args.topic]
    if schema.message_class is None:
        raise ConfigError(
            [Problem("TOPIC_SCHEMAS", "a protobuf type for the topic, not bytes", args.topic)]
        )
    records = encode_lines(stdin, schema.message_class, args.key_field)
    try:
        asyncio.run(send_all(kafka, args.topic, records, schema.type_name))
    except KafkaError as exc:
        raise FatalError(f"kafka: {type(exc).__name__}: {exc}") from exc
    print(f"produced {len(records)} {schema.type_name} records to {args.topic}", file=sys.stderr)
    return 0


def add_parser(subparsers: Any) -> None:
    produce = subparsers.add_parser(
        "produce", help="encode JSON lines from stdin with the topic's type and produce them"
    )
    produce.add_argument("topic")
    produce.add_argument("--key-field", help="field of each JSON object to use as the key")
    produce.set_defaults(handler=cmd_produce)

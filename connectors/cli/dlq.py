"""`connector dlq replay`: send dead letters back once their cause is fixed.

Reads the dead-letter topic with its own consumer group (`<CONNECTOR_NAME>.dlq-replay`), so
a replay interrupted half-way resumes where it stopped and a finished one is not repeated.
Each letter goes to its original topic (or `--to`), with its original key, value and
headers. Of the `dlq.*` headers, only the original position (`dlq.original.topic`,
`.partition`, `.offset`) is kept: writers that order data by position (the KV writer)
order a replayed record by where it was first read, so a dead letter replayed after newer
data for its key was stored does not undo it. `--as-new` drops the position too, for
letters that must overwrite whatever is stored. Offsets are committed after the sends are
acked.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from connectors.config.settings import DeadLetterSettings, KafkaSettings, load
from connectors.core.dead_letters import H_OFFSET, H_PARTITION, H_TOPIC, PREFIX
from connectors.core.errors import ConfigError, FatalError, Problem
from connectors.kafka import client_options, idempotent_producer

#: The headers a replayed record keeps: where it was first read from.
ORIGIN = frozenset((H_TOPIC, H_PARTITION, H_OFFSET))


def replayed_headers(
    headers: Sequence[tuple[str, bytes]], as_new: bool = False
) -> list[tuple[str, bytes]]:
    """A letter's headers without the dead-letter ones, except its original position."""
    kept = frozenset() if as_new else ORIGIN
    return [(k, v) for k, v in headers if not k.startswith(PREFIX) or k in kept]


async def replay(
    kafka: KafkaSettings,
    dlq_topic: str,
    group: str,
    to: str | None,
    limit: int | None,
    as_new: bool = False,
) -> int:
    consumer = AIOKafkaConsumer(
        dlq_topic,
        **client_options(kafka),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = idempotent_producer(kafka)
    await consumer.start()
    await producer.start()
    try:
        return await _replay_all(consumer, producer, dlq_topic, to, limit, as_new)
    finally:
        await producer.stop()
        await consumer.stop()


async def _replay_all(
    consumer: AIOKafkaConsumer,
    producer: Any,
    dlq_topic: str,
    to: str | None,
    limit: int | None,
    as_new: bool,
) -> int:
    """Replay up to the end offsets found at start; commit each fully sent fetch."""
    partitions = {
        TopicPartition(dlq_topic, p) for p in consumer.partitions_for_topic(dlq_topic) or ()
    }
    if not partitions:
        return 0  # no dead-letter topic: nothing was ever dead-lettered
    ends = await consumer.end_offsets(list(partitions))
    sent = 0
    while not await _caught_up(consumer, ends):
        fetched = await consumer.getmany(timeout_ms=500, max_records=500)
        room = None if limit is None else limit - sent
        sent += await _send(producer, fetched, to, as_new, room)
        if limit is not None and sent >= limit:
            break  # a partial fetch: commit nothing, the rest is replayed later
        positions = {tp: messages[-1].offset + 1 for tp, messages in fetched.items() if messages}
        if positions:
            await consumer.commit(positions)
    return sent


async def _send(
    producer: Any,
    fetched: Mapping[TopicPartition, Sequence[Any]],
    to: str | None,
    as_new: bool,
    room: int | None,
) -> int:
    """Send at most `room` letters of one fetch to their topics; return once all are acked."""
    futures: list[Any] = []
    for messages in fetched.values():
        for m in messages:
            if room is not None and len(futures) >= room:
                break
            target = to or dict(m.headers).get(H_TOPIC, b"").decode()
            if not target:
                raise FatalError(f"dead letter at offset {m.offset} names no original topic")
            own = replayed_headers(m.headers, as_new)
            futures.append(await producer.send(target, value=m.value, key=m.key, headers=own))
    for future in futures:
        await future
    return len(futures)


async def _caught_up(consumer: AIOKafkaConsumer, ends: Mapping[TopicPartition, int]) -> bool:
    assigned = consumer.assignment()
    if not assigned:
        return False
    for tp in assigned:
        if await consumer.position(tp) < ends.get(tp, 0):
            return False
    return True


def cmd_replay(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    problems: list[Problem] = []
    kafka = load(KafkaSettings, environ, problems)
    dlq = load(DeadLetterSettings, environ, problems)
    name = environ.get("CONNECTOR_NAME")
    if not name:
        problems.append(Problem("CONNECTOR_NAME", "required; names the dead-letter topic"))
    if problems or kafka is None or dlq is None or not name:
        raise ConfigError(problems)
    topic = dlq.topic or f"{name}.dlq"
    try:
        sent = asyncio.run(
            replay(kafka, topic, f"{name}.dlq-replay", args.to, args.limit, args.as_new)
        )
    except KafkaError as exc:
        raise FatalError(f"kafka: {type(exc).__name__}: {exc}") from exc
    print(f"replayed {sent} dead letters from {topic}", file=sys.stderr)
    return 0


def add_parser(subparsers: Any) -> None:
    dlq = subparsers.add_parser("dlq", help="work with the dead-letter topic")
    sub = dlq.add_subparsers(dest="dlq_command", required=True)
    replay_cmd = sub.add_parser(
        "replay", help="re-publish dead letters to their original topic (or --to)"
    )
    replay_cmd.add_argument("--to", help="topic to send them to instead of the original")
    replay_cmd.add_argument("--limit", type=int, help="send at most this many")
    replay_cmd.add_argument(
        "--as-new",
        action="store_true",
        help="drop the original position: the records overwrite what is stored for their "
        "keys, even newer data",
    )
    replay_cmd.set_defaults(handler=cmd_replay)

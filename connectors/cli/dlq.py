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

A letter cut to fit the dead-letter topic (`dlq.truncated`, `dlq.truncated.key`) is never
replayed: its value is incomplete, and a sink would store it as if it were whole. Each one
is named on a `warning:` line (where it lies, where it came from, its original size) and
counted in the summary, and the command exits 1 so that a script notices; it is committed
like the others (the warning is its record: the original is in the input topic while
retention keeps it). With `TOPIC_CATALOG`, a letter whose target topic is not in the
catalog, or whose `content-type` names another type than the topic's, is not replayed
either (a `warning:` line each, counted, exit 1): the catalog's one type per topic holds
for replays too. `--to` is checked as a topic name before connecting and asked for
before anything is read: a missing topic stops the replay at once, nothing sent.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from connectors.cli.produce import checked_topic, require_topic
from connectors.config.catalog.bind import catalog_types
from connectors.config.settings import DeadLetterSettings, KafkaSettings, load
from connectors.core.dead_letters import H_OFFSET, H_PARTITION, H_TOPIC, PREFIX
from connectors.core.errors import ConfigError, FatalError, Problem, quoted
from connectors.core.records import TYPE_HEADER
from connectors.kafka import client_options, idempotent_producer
from connectors.kafka.dead_letters import H_TRUNCATED, H_TRUNCATED_KEY

#: The headers a replayed record keeps: where it was first read from.
ORIGIN = frozenset((H_TOPIC, H_PARTITION, H_OFFSET))


@dataclass
class Tally:
    """What one replay did: letters sent, and truncated letters left out."""

    replayed: int = 0
    truncated: int = 0
    refused: int = 0
    #: With TOPIC_CATALOG: each topic's type; a letter of another type is not replayed.
    types: Mapping[str, str] | None = None


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
    types: Mapping[str, str] | None = None,
) -> Tally:
    producer = idempotent_producer(kafka)
    await producer.start()
    try:
        if to is not None:
            await require_topic(producer, to, kafka)
        return await _consume(kafka, producer, dlq_topic, group, to, limit, as_new, types)
    finally:
        await producer.stop()


async def _consume(
    kafka: KafkaSettings,
    producer: AIOKafkaProducer,
    dlq_topic: str,
    group: str,
    to: str | None,
    limit: int | None,
    as_new: bool,
    types: Mapping[str, str] | None = None,
) -> Tally:
    consumer = AIOKafkaConsumer(
        dlq_topic,
        **client_options(kafka),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        return await _replay_all(consumer, producer, dlq_topic, to, limit, as_new, types)
    finally:
        await consumer.stop()


async def _replay_all(
    consumer: AIOKafkaConsumer,
    producer: Any,
    dlq_topic: str,
    to: str | None,
    limit: int | None,
    as_new: bool,
    types: Mapping[str, str] | None = None,
) -> Tally:
    """Replay up to the end offsets found at start; commit each fully sent fetch."""
    partitions = {
        TopicPartition(dlq_topic, p) for p in consumer.partitions_for_topic(dlq_topic) or ()
    }
    tally = Tally(types=types)
    if not partitions:
        return tally  # no dead-letter topic: nothing was ever dead-lettered
    ends = await consumer.end_offsets(list(partitions))
    while not await _caught_up(consumer, ends):
        fetched = await consumer.getmany(timeout_ms=500, max_records=500)
        room = None if limit is None else limit - tally.replayed
        await _send(producer, fetched, to, as_new, room, tally)
        if limit is not None and tally.replayed >= limit:
            break  # a partial fetch: commit nothing, the rest is replayed later
        positions = {tp: messages[-1].offset + 1 for tp, messages in fetched.items() if messages}
        if positions:
            await consumer.commit(positions)
    return tally


async def _send(
    producer: Any,
    fetched: Mapping[TopicPartition, Sequence[Any]],
    to: str | None,
    as_new: bool,
    room: int | None,
    tally: Tally,
) -> None:
    """Send at most `room` letters of one fetch to their topics, skipping truncated ones
    (counted in `tally`); return once all are acked."""
    futures: list[Any] = []
    for messages in fetched.values():
        for m in messages:
            if room is not None and len(futures) >= room:
                break
            cut = truncation(m.headers)
            if cut is not None:
                print(f"warning: {_skipped(m, cut)}", file=sys.stderr, flush=True)
                tally.truncated += 1
                continue
            target = to or dict(m.headers).get(H_TOPIC, b"").decode()
            if not target:
                raise FatalError(f"dead letter at offset {m.offset} names no original topic")
            wrong = contract(tally.types, target, m.headers)
            if wrong is not None:
                print(
                    f"warning: dead letter {m.topic} partition {m.partition} offset "
                    f"{m.offset} not replayed: {wrong}",
                    file=sys.stderr,
                    flush=True,
                )
                tally.refused += 1
                continue
            own = replayed_headers(m.headers, as_new)
            futures.append(await producer.send(target, value=m.value, key=m.key, headers=own))
    for future in futures:
        await future
    tally.replayed += len(futures)


def contract(
    types: Mapping[str, str] | None, target: str, headers: Sequence[tuple[str, bytes]]
) -> str | None:
    """Why the catalog forbids sending a letter to `target`, or None when it may go."""
    if types is None:
        return None
    expected = types.get(target)
    if expected is None:
        return f"topic {target!r} is not in TOPIC_CATALOG"
    declared = dict(headers).get(TYPE_HEADER)
    for part in (declared or b"").decode("utf-8", "replace").split(";"):
        key, _, value = part.strip().partition("=")
        if key.lower() == "messagetype" and value != expected:
            return f"it declares type {value!r}; topic {target!r} carries {expected} only"
    return None


def truncation(headers: Sequence[tuple[str, bytes]]) -> str | None:
    """How a letter was cut to fit the dead-letter topic, or None if it is whole."""
    found = dict(headers)
    cuts = [
        f"{what} of {_text(found[header])} bytes"
        for header, what in ((H_TRUNCATED, "value"), (H_TRUNCATED_KEY, "key"))
        if header in found
    ]
    return " and ".join(cuts) if cuts else None


def _skipped(letter: Any, cut: str) -> str:
    """One line naming a letter not replayed: where it lies, where it came from, its size."""
    found = dict(letter.headers)
    origin = ", ".join(
        f"{name} {_text(found.get(header, b'?'))}"
        for header, name in ((H_TOPIC, "topic"), (H_PARTITION, "partition"), (H_OFFSET, "offset"))
    )
    return (
        f"dead letter {letter.topic} partition {letter.partition} offset {letter.offset} not "
        f"replayed: cut to fit the dead-letter topic (original {cut}); the original record: "
        f"{origin}"
    )


def _text(raw: bytes | None) -> str:
    """A header value as printable text on one line (headers are anyone's bytes)."""
    text = (raw or b"").decode("utf-8", "replace")
    return text if text.isprintable() and " " not in text else quoted(text)


async def _caught_up(consumer: AIOKafkaConsumer, ends: Mapping[TopicPartition, int]) -> bool:
    assigned = consumer.assignment()
    if not assigned:
        return False
    for tp in assigned:
        if await consumer.position(tp) < ends.get(tp, 0):
            return False
    return True


def cmd_replay(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    if args.to is not None:
        checked_topic("--to", args.to)
    problems: list[Problem] = []
    kafka = load(KafkaSettings, environ, problems)
    dlq = load(DeadLetterSettings, environ, problems)
    name = environ.get("CONNECTOR_NAME")
    if not name:
        problems.append(Problem("CONNECTOR_NAME", "required; names the dead-letter topic"))
    if problems or kafka is None or dlq is None or not name:
        raise ConfigError(problems)
    topic = dlq.topic or f"{name}.dlq"
    catalog = environ.get("TOPIC_CATALOG")
    types = catalog_types(Path(catalog)) if catalog else None
    try:
        tally = asyncio.run(
            replay(kafka, topic, f"{name}.dlq-replay", args.to, args.limit, args.as_new, types)
        )
    except KafkaError as exc:
        raise FatalError(f"kafka: {type(exc).__name__}: {exc}") from exc
    summary = f"replayed {tally.replayed} dead letters from {topic}"
    if tally.truncated:
        summary += f"; {tally.truncated} truncated letters not replayed"
    if tally.refused:
        summary += f"; {tally.refused} letters refused by TOPIC_CATALOG"
    print(summary, file=sys.stderr)
    return 1 if tally.truncated or tally.refused else 0


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

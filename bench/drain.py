"""The baselines, each run in a process of its own: `python -m bench.drain SCENARIO ...`.

- B1: a raw aiokafka `getmany()` drain with tuned fetch sizes, counting only;
- B2: a raw confluent-kafka `consume(num_messages=...)` drain, counting only;
- B3: B1 plus protobuf decode of every record, the way the runtime decodes;
- S1: the LMDB KV writer alone, fed from memory the entries the runtime would write
  (the real `pf_edge` transform and key, the runtime's batch size and KV_SYNC).

Each prints one JSON line: records, seconds from the first message to the last, and the
process's CPU seconds over that interval (`time.process_time`: every thread).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Raw clients read with larger fetches than a connector's defaults: the aim is the client's
# ceiling. 8 MiB per partition and 64 MiB per fetch; getmany returns all that is buffered.
FETCH_MAX_BYTES = 64 << 20
PARTITION_FETCH_BYTES = 8 << 20
GETMANY_MAX_RECORDS = 50_000
CONSUME_NUM_MESSAGES = 10_000

ROOT = Path(__file__).resolve().parent.parent
DESCRIPTORS = ROOT / "transforms" / "proto" / "edge.binpb"
TYPE_NAME = "edge.v1.ZoneSettingsChanged"


def _result(records: int, first: tuple[float, float], last: tuple[float, float]) -> dict[str, Any]:
    return {
        "records": records,
        "elapsed_s": last[0] - first[0],
        "cpu_s": last[1] - first[1],
    }


def _clock() -> tuple[float, float]:
    return (time.perf_counter(), time.process_time())


async def _aiokafka_drain(
    bootstrap: str, topic: str, partitions: int, expect: int, decode: bool
) -> dict[str, Any]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    message_class = None
    if decode:
        from connectors.config.schemas import find_message_class, load_descriptor_set

        message_class = find_message_class(TYPE_NAME, (load_descriptor_set(DESCRIPTORS),))
        assert message_class is not None
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=FETCH_MAX_BYTES,
        max_partition_fetch_bytes=PARTITION_FETCH_BYTES,
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        await consumer.seek_to_beginning()
        count = 0
        first: tuple[float, float] | None = None
        decoded = 0
        while count < expect:
            fetched = await consumer.getmany(timeout_ms=1000, max_records=GETMANY_MAX_RECORDS)
            if first is None and fetched:
                first = _clock()
            for messages in fetched.values():
                count += len(messages)
                if message_class is not None:
                    for m in messages:
                        message = message_class()
                        message.ParseFromString(m.value)
                        decoded += 1
        last = _clock()
    finally:
        await consumer.stop()
    assert first is not None
    result = _result(count, first, last)
    if decode:
        result["decoded"] = decoded
    return result


def _confluent_drain(bootstrap: str, topic: str, partitions: int, expect: int) -> dict[str, Any]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-b2-{uuid.uuid4().hex[:8]}",  # required; never joined
            "enable.auto.commit": False,
            "fetch.max.bytes": FETCH_MAX_BYTES,
            "max.partition.fetch.bytes": PARTITION_FETCH_BYTES,
            "queued.max.messages.kbytes": 262_144,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        count = 0
        first: tuple[float, float] | None = None
        while count < expect:
            messages = consumer.consume(num_messages=CONSUME_NUM_MESSAGES, timeout=1.0)
            if not messages:
                continue
            if first is None:
                first = _clock()
            for m in messages:
                if m.error() is None:
                    count += 1
                else:
                    print(f"consume error: {m.error()}", file=sys.stderr)
        last = _clock()
    finally:
        consumer.close()
    assert first is not None
    return _result(count, first, last)


def _chunks(path: Path, count: int, size: int) -> Iterator[list[tuple[bytes, bytes]]]:
    from bench.data import read_records

    chunk: list[tuple[bytes, bytes]] = []
    for pair in read_records(path, count):
        chunk.append(pair)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def _writer_alone(payload: Path, count: int, kv_dir: Path, env: dict[str, str]) -> Any:
    """S1: entries built in chunks of 20,000 records, then written in batches of
    BATCH_MAX_MESSAGES through the plugin's own `write`, timed write by write.

    Building the entries is timed too, apart from the writes: decode and transform (the
    real `pf_edge`) separately, so the report can give the transform alone (T) and a serial
    bound that includes it."""
    from connectors import Batch, Record, WriteBatch, WriterContext
    from connectors.config.pipeline import resolve

    pipeline = resolve(env)
    writer = pipeline.writer.build(pipeline.writer_settings, WriterContext("bench-s1"))
    schemas, chain = pipeline.schemas, pipeline.chain
    batch_size = pipeline.runtime.batch_max_messages
    topic = pipeline.runtime.topics[0]
    await writer.start()
    elapsed = 0.0
    cpu = 0.0
    decode_s = 0.0
    transform_s = 0.0
    written = 0
    offset = 0
    try:
        for chunk in _chunks(payload, count, 20_000):
            records = []
            for key, value in chunk:
                records.append(Record(topic, 0, offset, key, value, (), 0))
                offset += 1
            t0 = time.perf_counter()
            messages = [schemas.decode(record) for record in records]
            t1 = time.perf_counter()
            produced = [chain.apply(record, m) for record, m in zip(records, messages, strict=True)]
            t2 = time.perf_counter()
            decode_s += t1 - t0
            transform_s += t2 - t1
            batches = [
                WriteBatch(
                    Batch(records[start : start + batch_size]),
                    tuple(e for entries in produced[start : start + batch_size] for e in entries),
                )
                for start in range(0, len(records), batch_size)
            ]
            t0, c0 = _clock()
            for write_batch in batches:
                await writer.write(write_batch)
            t1, c1 = _clock()
            elapsed += t1 - t0
            cpu += c1 - c0
            written += len(records)
    finally:
        await writer.close()
    return {
        "records": written,
        "elapsed_s": elapsed,
        "cpu_s": cpu,
        "decode_s": decode_s,
        "transform_s": transform_s,
        "kv_dir": str(kv_dir),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.drain")
    parser.add_argument("scenario", choices=["B1", "B2", "B3", "S1"])
    parser.add_argument("--bootstrap")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--payload", type=Path, help="S1: the kcat input file")
    parser.add_argument("--kv-dir", type=Path, help="S1: a fresh LMDB folder")
    parser.add_argument("--env", help="S1: JSON of the connector environment")
    args = parser.parse_args(argv)
    if args.scenario in ("B1", "B3"):
        result = asyncio.run(
            _aiokafka_drain(
                args.bootstrap, args.topic, args.partitions, args.expect, args.scenario == "B3"
            )
        )
    elif args.scenario == "B2":
        result = _confluent_drain(args.bootstrap, args.topic, args.partitions, args.expect)
    else:
        env = json.loads(args.env)
        result = asyncio.run(_writer_alone(args.payload, args.expect, args.kv_dir, env))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

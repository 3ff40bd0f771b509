"""The catalog's record on the cluster: each topic's type and consumer group prefixes.

Kafka keeps no custom key in a topic's configs, so `connector topics apply` keeps what it
must compare later (a topic's type, the group prefixes whose ACLs it owns) in a compacted
topic, `_connector_catalog` by default: key the topic name, value JSON
(`{"type": ..., "groups": [...]}`), a tombstone once the topic is deleted. Reading it
to its end offsets gives the last apply's view; it is created (compacted, one partition,
replicated like the cluster allows up to 3) by the first apply that writes to it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka import errors as kafka_errors

from connectors.config.catalog.plan import Recorded
from connectors.config.settings import KafkaSettings
from connectors.core.errors import ConnectorError
from connectors.kafka.errors import Where, translate
from connectors.kafka.options import client_options
from connectors.kafka.producer import idempotent_producer

DEFAULT_TOPIC = "_connector_catalog"
RECORD_CONFIGS = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}
_POLL_MS = 500


async def read_records(settings: KafkaSettings, topic: str, partitions: int) -> dict[str, Recorded]:
    """What the record topic holds, up to its end offsets when read (empty if absent)."""
    if partitions == 0:
        return {}
    records: dict[str, Recorded] = {}
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    try:
        await consumer.start()
        assigned = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        while any([await consumer.position(tp) < ends[tp] for tp in assigned]):
            fetched = await consumer.getmany(timeout_ms=_POLL_MS)
            for messages in fetched.values():
                for message in messages:
                    _fold(records, message.key, message.value)
    except (kafka_errors.KafkaError, OSError) as exc:
        where = Where(f"catalog record {topic!r}", settings, "READ", (topic,))
        raise translate(exc, where) from exc
    finally:
        await consumer.stop()
    return records


def _fold(records: dict[str, Recorded], key: bytes | None, value: bytes | None) -> None:
    if key is None:
        return
    name = key.decode("utf-8", "replace")
    if value is None:
        records.pop(name, None)
        return
    try:
        document = json.loads(value)
        records[name] = Recorded(str(document["type"]), tuple(document.get("groups", ())))
    except (ValueError, KeyError, TypeError):
        return  # not ours: ignored, the next apply writes a valid one


def encode(recorded: Recorded | None) -> bytes | None:
    if recorded is None:
        return None
    return json.dumps({"type": recorded.type, "groups": list(recorded.groups)}).encode()


async def write_records(
    settings: KafkaSettings, topic: str, records: Iterable[tuple[str, Recorded | None]]
) -> None:
    """Write each topic's record (None: a tombstone); returns once all are acknowledged."""
    producer = idempotent_producer(settings)
    try:
        await producer.start()
        futures = [
            await producer.send(topic, key=name.encode(), value=encode(recorded))
            for name, recorded in records
        ]
        for future in futures:
            await future
    except ConnectorError:
        raise
    except (kafka_errors.KafkaError, OSError) as exc:
        raise translate(
            exc, Where(f"catalog record {topic!r}", settings, "WRITE", (topic,))
        ) from exc
    finally:
        await producer.stop()

"""What `connector check --connect` asks the brokers, without changing anything there.

Every call here only reads: a metadata request (brokers, topics, partitions), the topics'
`retention.ms`, the group's committed offsets (an admin request: the group is not joined),
and the last messages of each topic, read by a consumer that has NO group (partitions
assigned, positions sought to `end - N`), so nothing is committed, no member joins or leaves
the group, and no topic is created (the client's metadata requests do not create topics).
Failures are turned into one line by the one translation (`connectors.kafka.errors`);
a client that cannot bootstrap is diagnosed like the pipeline's own (`bootstrap.diagnose`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as KafkaPartition
from aiokafka import errors as kafka_errors
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.admin import DescribeConfigsRequest

from connectors.config.settings import KafkaSettings
from connectors.core.records import Record, TopicPartition
from connectors.kafka.bootstrap import diagnose
from connectors.kafka.errors import Where, translate
from connectors.kafka.metadata import describe_topics
from connectors.kafka.offsets import BrokerOffsets
from connectors.kafka.options import client_options

__all__ = ["BrokerProbe", "TopicFound"]

_TOPIC_RESOURCE = 2
CLIENT_ID = "connector-check"


@dataclass(frozen=True, slots=True)
class TopicFound:
    """One topic as the brokers describe it; `partitions` 0 when it does not exist."""

    name: str
    exists: bool
    partitions: int
    retention_ms: str | None = None
    error: str | None = None


class BrokerProbe:
    """One metadata client for the check's questions; `close` releases everything."""

    def __init__(self, settings: KafkaSettings, timeout_s: float) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self._client = AIOKafkaClient(
            **client_options(settings),
            client_id=CLIENT_ID,
            request_timeout_ms=int(timeout_s * 1000),
        )

    def _where(self, topics: tuple[str, ...] = (), group: str | None = None) -> Where:
        return Where("kafka", self.settings, "DESCRIBE", topics, group)

    async def connect(self) -> str:
        """Bootstrap (TLS and SASL included); the brokers' count and how we are seen.
        Raises the pipeline's own one-line error when that fails."""
        try:
            await self._client.bootstrap()
        except kafka_errors.KafkaError as exc:
            raise await diagnose(exc, self.settings) from exc
        except Exception as exc:  # noqa: BLE001 - judged by the one translation
            raise translate(exc, self._where()) from exc
        s = self.settings
        brokers = len(self._client.cluster.brokers())
        how: str = s.security_protocol
        if how.startswith("SASL_"):
            how += f", {s.sasl_mechanism} as {s.sasl_username!r} accepted"
        return f"{brokers} broker(s) at {s.bootstrap_servers} answer ({how})"

    async def topics(self, names: list[str]) -> dict[str, TopicFound]:
        """Each of `names`: exists, partitions, retention.ms."""
        try:
            described = await describe_topics(self._client, names)
        except Exception as exc:  # noqa: BLE001 - judged by the one translation
            raise translate(exc, self._where(tuple(names))) from exc
        found: dict[str, TopicFound] = {}
        existing = []
        for name in names:
            state = described.topics.get(name)
            if state is None or state.missing:
                found[name] = TopicFound(name, False, 0)
            elif state.error is not None:
                error = translate(state.error(name), self._where((name,)))
                found[name] = TopicFound(name, False, 0, error=str(error))
            else:
                found[name] = TopicFound(name, True, state.partitions)
                existing.append(name)
        retention = await self._retention(existing, described.controller)
        for name in existing:
            found[name] = TopicFound(name, True, found[name].partitions, retention.get(name))
        return found

    async def _retention(self, names: list[str], node: int) -> dict[str, str]:
        """`retention.ms` per topic; empty where the brokers do not say (no permission)."""
        if not names:
            return {}
        request = DescribeConfigsRequest([(_TOPIC_RESOURCE, n, ["retention.ms"]) for n in names])
        try:
            response = await self._client.send(node, request)
        except Exception:  # noqa: BLE001 - retention is shown when known, not required
            return {}
        values: dict[str, str] = {}
        for resource in response.resources:
            code, _message, _type, name, entries = resource[:5]
            for entry in entries if code == 0 else ():
                if entry[0] == "retention.ms" and entry[1] is not None:
                    values[name] = str(entry[1])
        return values

    async def offsets(
        self, group: str, partitions: set[TopicPartition]
    ) -> tuple[dict[TopicPartition, int | None], dict[TopicPartition, int]]:
        """(committed, end) per partition, read without joining `group`."""
        reader = BrokerOffsets(self.settings, group, CLIENT_ID, self.timeout_s)
        try:
            return await reader.fetch(partitions)
        finally:
            await reader.close()

    async def sample(self, topic: str, partitions: int, count: int) -> list[Record]:
        """The last `count` messages of `topic` (by timestamp, over its partitions), read by a
        consumer without a group: nothing committed, the group untouched."""
        s = self.settings
        consumer = AIOKafkaConsumer(
            **client_options(s),
            client_id=CLIENT_ID,
            group_id=None,
            enable_auto_commit=False,
            isolation_level=s.isolation_level,
            auto_offset_reset="earliest",
            request_timeout_ms=int(self.timeout_s * 1000),
        )
        try:
            await consumer.start()
            return await _last(consumer, topic, partitions, count)
        except Exception as exc:  # noqa: BLE001 - judged by the one translation
            raise translate(exc, Where("kafka", s, "READ", (topic,))) from exc
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._client.close()


async def _last(
    consumer: AIOKafkaConsumer, topic: str, partitions: int, count: int
) -> list[Record]:
    wanted = [KafkaPartition(topic, p) for p in range(partitions)]
    consumer.assign(wanted)
    starts = await consumer.beginning_offsets(wanted)
    ends = await consumer.end_offsets(wanted)
    # Up to `count` from each partition, of which the `count` latest are kept: the last
    # messages of the topic, however unevenly its partitions are filled.
    first = {tp: max(int(starts[tp]), int(ends[tp]) - count) for tp in wanted}
    pending = {tp: int(ends[tp]) for tp in wanted if first[tp] < int(ends[tp])}
    if not pending:
        return []
    consumer.assign(list(pending))
    for tp in pending:
        consumer.seek(tp, first[tp])
    records: list[Any] = []
    while pending:
        fetched = await consumer.getmany(timeout_ms=1000)
        for tp, messages in fetched.items():
            records.extend(m for m in messages if m.offset < pending.get(tp, 0))
        for tp in list(pending):
            if await consumer.position(tp) >= pending[tp]:
                del pending[tp]
    records.sort(key=lambda m: (m.timestamp, m.partition, m.offset))
    return [
        Record(m.topic, m.partition, m.offset, m.key, m.value, tuple(m.headers), m.timestamp)
        for m in records[-count:]
    ]

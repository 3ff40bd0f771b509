"""Committed and end offsets read from the brokers, outside the consumer group.

Committed offsets come from an admin client and end offsets from a consumer that has no
group, so reading them never joins, leaves or rebalances the group the pipeline consumes
in. Failures are judged by the one translation (`connectors.kafka.errors`): what may pass
with time (a broker down, a timeout, a leader moving) makes the offsets *unavailable*; what
will not (a missing DESCRIBE permission, failed authentication) makes them *refused*, with
the same one-line message naming resource, permission and principal that the pipeline's
own clients would give.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as KafkaPartition
from aiokafka.admin import AIOKafkaAdminClient

from connectors.config.settings import KafkaSettings
from connectors.core.records import TopicPartition
from connectors.kafka.errors import Where, translate, verdict
from connectors.kafka.metadata import describe_topics
from connectors.kafka.options import client_options

__all__ = ["BrokerOffsets", "OffsetsUnavailable", "unavailable"]

T = TypeVar("T")
Offsets = tuple[dict[TopicPartition, int | None], dict[TopicPartition, int]]


class OffsetsUnavailable(Exception):  # noqa: N818 - a state reported to the probe, not a bug
    """The brokers did not give committed or end offsets.

    `refused` is True when waiting will not help (the translation calls the error fatal:
    a permission, authentication, a setting the broker refuses); the message is then the
    translation's one line.
    """

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


def unavailable(what: str, exc: BaseException, where: Where) -> OffsetsUnavailable:
    """`exc`, met while doing `what`, as the state the health checks report."""
    if verdict(exc) == "fatal":
        return OffsetsUnavailable(str(translate(exc, where)), refused=True)
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return OffsetsUnavailable(f"{what}: {detail}")


class BrokerOffsets:
    """Committed offsets of a group and end offsets, read without joining the group.

    Clients start on first use and are dropped after any failure, so a broker that comes
    back is found again without restarting the process. Every call is bounded by
    `timeout_s`.
    """

    def __init__(
        self, settings: KafkaSettings, group_id: str, client_id: str, timeout_s: float
    ) -> None:
        self._settings = settings
        self._options = client_options(settings)
        self._group_id = group_id
        self._client_id = client_id
        self._timeout_s = timeout_s
        self._admin: AIOKafkaAdminClient | None = None
        self._ends: AIOKafkaConsumer | None = None

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        options = self._options
        timeout_ms = int(self._timeout_s * 1000)
        if self._admin is None:
            admin = AIOKafkaAdminClient(
                **options, client_id=self._client_id, request_timeout_ms=timeout_ms
            )
            self._admin = admin
            await admin.start()
        if self._ends is None:
            consumer = AIOKafkaConsumer(
                **options,
                client_id=self._client_id,
                group_id=None,
                enable_auto_commit=False,
                request_timeout_ms=timeout_ms,
            )
            self._ends = consumer
            await consumer.start()
        return self._admin, self._ends

    async def _bounded(
        self, what: str, call: Callable[[], Awaitable[T]], topics: tuple[str, ...] = ()
    ) -> T:
        try:
            return await asyncio.wait_for(call(), self._timeout_s)
        except Exception as exc:  # noqa: BLE001 - judged by the one translation below
            await self.close()
            where = Where(
                f"{what} for the health checks",
                self._settings,
                operation="DESCRIBE",
                topics=topics,
                group=self._group_id,
            )
            raise unavailable(what, exc, where) from exc

    async def ping(self) -> None:
        """A metadata request: does any broker answer this client at all?"""

        async def call() -> None:
            admin, _ = await self._clients()
            await admin.list_topics()

        await self._bounded("list topics", call)

    async def fetch(self, partitions: set[TopicPartition]) -> Offsets:
        """(committed, end) per partition; committed is None where the group has none."""
        wanted = [KafkaPartition(t, p) for t, p in sorted(partitions)]

        async def call() -> Offsets:
            admin, consumer = await self._clients()
            found = await admin.list_consumer_group_offsets(self._group_id, partitions=wanted)
            ends = await consumer.end_offsets(wanted)
            committed: dict[TopicPartition, int | None] = {}
            for tp in wanted:
                meta = found.get(tp)
                offset = None if meta is None else int(meta.offset)
                committed[(tp.topic, tp.partition)] = (
                    offset if offset is not None and offset >= 0 else None
                )
            return committed, {(tp.topic, tp.partition): int(o) for tp, o in ends.items()}

        topics = tuple(sorted({topic for topic, _ in partitions}))
        return await self._bounded("read offsets", call, topics)

    async def partitions(self, topics: tuple[str, ...]) -> set[TopicPartition]:
        """Every partition of `topics` the brokers know of."""

        async def call() -> set[TopicPartition]:
            _, consumer = await self._clients()
            client = consumer._client  # noqa: SLF001 - its connections, TLS and SASL
            described = await describe_topics(client, list(topics))
            return {
                (name, partition)
                for name, state in described.topics.items()
                for partition in range(state.partitions)
            }

        return await self._bounded("describe topics", call, topics)

    async def close(self) -> None:
        admin, consumer = self._admin, self._ends
        self._admin = self._ends = None
        if admin is not None:
            with contextlib.suppress(Exception):
                await admin.close()
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()

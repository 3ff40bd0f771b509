"""The Kafka reader: one aiokafka consumer in a group, batched fetches, manual commits.

Auto-commit is off: the runner commits explicit offsets after the writer succeeded. The
rebalance listener awaits the runner's `on_revoke` before partitions are given away, so a
batch in flight is written and committed by its owner and never half-committed by nobody.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka import errors as kafka_errors

from connectors import (
    Batch,
    FatalError,
    KafkaSettings,
    OnRevoke,
    ReaderContext,
    ReaderPlugin,
    Record,
    RetriableError,
)
from connectors import TopicPartition as TP

_log = logging.getLogger("connectors.readers.kafka")

_FATAL = (
    kafka_errors.TopicAuthorizationFailedError,
    kafka_errors.GroupAuthorizationFailedError,
    kafka_errors.ClusterAuthorizationFailedError,
    kafka_errors.SaslAuthenticationFailed,
    kafka_errors.AuthenticationFailedError,
    kafka_errors.UnsupportedVersionError,
)


def _as_ours(exc: kafka_errors.KafkaError) -> Exception:
    if isinstance(exc, _FATAL):
        return FatalError(f"kafka: {type(exc).__name__}: {exc}")
    return RetriableError(f"kafka: {type(exc).__name__}: {exc}")


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, on_revoke: OnRevoke) -> None:
        self._on_revoke = on_revoke

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._on_revoke([(tp.topic, tp.partition) for tp in revoked])

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        _log.info("assigned %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))


class KafkaReader:
    def __init__(self, settings: KafkaSettings, context: ReaderContext) -> None:
        self._settings = settings
        self._context = context
        self._consumer: AIOKafkaConsumer | None = None

    @property
    def consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("reader not started")
        return self._consumer

    async def start(self, on_revoke: OnRevoke) -> None:
        s = self._settings
        self._consumer = AIOKafkaConsumer(
            **s.client_options(),
            group_id=s.group_id or self._context.connector_name,
            client_id=s.client_id or self._context.connector_name,
            enable_auto_commit=False,
            auto_offset_reset=s.auto_offset_reset,
            session_timeout_ms=s.session_timeout_ms,
            max_poll_interval_ms=s.max_poll_interval_ms,
            fetch_max_bytes=s.fetch_max_bytes,
            max_partition_fetch_bytes=s.max_partition_fetch_bytes,
            max_poll_records=self._context.batch_max_messages,
        )
        self._consumer.subscribe(list(self._context.topics), listener=_Listener(on_revoke))
        try:
            await self._consumer.start()
        except kafka_errors.KafkaError as exc:
            await self._consumer.stop()
            raise _as_ours(exc) from exc

    async def batch(self) -> Batch:
        try:
            fetched = await self.consumer.getmany(
                timeout_ms=self._context.batch_max_wait_ms,
                max_records=self._context.batch_max_messages,
            )
        except kafka_errors.KafkaError as exc:
            raise _as_ours(exc) from exc
        records = [
            Record(
                topic=m.topic,
                partition=m.partition,
                offset=m.offset,
                key=m.key,
                value=m.value,
                headers=tuple(m.headers),
                timestamp_ms=m.timestamp,
            )
            for messages in fetched.values()
            for m in messages
        ]
        return Batch(records)

    async def commit(self, offsets: Mapping[TP, int]) -> None:
        if not offsets:
            return
        try:
            await self.consumer.commit({TopicPartition(t, p): o for (t, p), o in offsets.items()})
        except kafka_errors.CommitFailedError as exc:
            # The group moved on without us; the written batch is replayed by the new owner
            # and overwritten idempotently, so this loses nothing.
            _log.warning("commit refused after a rebalance, records will be replayed: %s", exc)
        except kafka_errors.KafkaError as exc:
            raise _as_ours(exc) from exc

    def assignment(self) -> set[TP]:
        return {(tp.topic, tp.partition) for tp in self.consumer.assignment()}

    async def end_offsets(self, partitions: set[TP]) -> dict[TP, int]:
        tps = [TopicPartition(t, p) for t, p in partitions]
        try:
            ends = await self.consumer.end_offsets(tps)
        except kafka_errors.KafkaError as exc:
            raise _as_ours(exc) from exc
        return {(tp.topic, tp.partition): int(o) for tp, o in ends.items()}

    async def positions(self, partitions: set[TP]) -> dict[TP, int]:
        found: dict[TP, int] = {}
        for t, p in partitions:
            try:
                found[(t, p)] = int(await self.consumer.position(TopicPartition(t, p)))
            except kafka_errors.IllegalStateError:
                continue  # revoked meanwhile
            except kafka_errors.KafkaError as exc:
                raise _as_ours(exc) from exc
        return found

    async def keepalive(self, seconds: float) -> None:
        consumer = self.consumer
        consumer.pause(*consumer.assignment())
        try:
            fetched = await consumer.getmany(timeout_ms=int(seconds * 1000), max_records=1)
        except kafka_errors.KafkaError as exc:
            raise _as_ours(exc) from exc
        for tp, messages in fetched.items():
            # A partition assigned while paused was not paused yet: rewind to what it gave.
            if messages:
                consumer.seek(tp, messages[0].offset)
                consumer.pause(tp)

    def resume(self) -> None:
        consumer = self.consumer
        consumer.resume(*consumer.assignment())

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()


def _build(settings: KafkaSettings, context: ReaderContext) -> KafkaReader:
    return KafkaReader(settings, context)


PLUGIN = ReaderPlugin(name="kafka", settings=KafkaSettings, build=_build)

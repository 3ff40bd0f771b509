"""The Kafka reader: one aiokafka consumer in a group, batched fetches, manual commits.

Auto-commit is off: the runner commits explicit offsets after the writer succeeded. The
rebalance listener awaits the runner's `on_revoke` before partitions are given away, so a
batch in flight is written and committed by its owner and never half-committed by nobody.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka import errors as kafka_errors
from aiokafka.conn import create_conn

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
from connectors.kafka import AUTHENTICATION, Where, client_options, principal, translate

_log = logging.getLogger("connectors.readers.kafka")
_new_tuple: Any = tuple.__new__

_PROBE_TIMEOUT_MS = 10_000
# TLS alerts by which a broker refuses the client certificate (mutual TLS).
_CERTIFICATE_REFUSED = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED",
    "SSLV3_ALERT_BAD_CERTIFICATE",
    "TLSV1_ALERT_UNKNOWN_CA",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
    "TLSV1_ALERT_ACCESS_DENIED",
}


async def _connect_once(settings: KafkaSettings) -> BaseException | None:
    """Why the bootstrap failed: aiokafka logs each broker's error but raises only
    "Unable to bootstrap", so one connection of our own (same TLS and SASL) finds out."""
    options = client_options(settings)
    cause: BaseException | None = None
    for server in settings.bootstrap_servers.split(","):
        host, _, port = server.rpartition(":")
        try:
            conn = await create_conn(
                host.strip("[]"),
                int(port),
                request_timeout_ms=_PROBE_TIMEOUT_MS,
                ssl_context=options.get("ssl_context"),
                security_protocol=settings.security_protocol,
                sasl_mechanism=options.get("sasl_mechanism"),
                sasl_plain_username=options.get("sasl_plain_username"),
                sasl_plain_password=options.get("sasl_plain_password"),
            )
        except (OSError, TimeoutError, kafka_errors.KafkaError) as exc:
            cause = exc
        else:
            conn.close()
            return None
    return cause


def _unreachable(
    exc: kafka_errors.KafkaError, cause: BaseException | None, settings: KafkaSettings
) -> Exception:
    """Bad credentials and an untrusted certificate will not heal by retrying: fatal."""
    servers = settings.bootstrap_servers
    if isinstance(cause, AUTHENTICATION):
        detail = cause.args[0] if cause.args else cause.description
        return FatalError(
            f"kafka: authentication failed for {principal(settings)} with "
            f"{settings.sasl_mechanism} at {servers}: {detail} (check KAFKA_SASL_USERNAME, "
            f"KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM)"
        )
    if isinstance(cause, ssl.SSLCertVerificationError):
        return FatalError(
            f"kafka: TLS: the certificate of {servers} is not trusted: "
            f"{cause.verify_message} (check KAFKA_SSL_CAFILE={settings.ssl_cafile or '(system)'}"
            f" and KAFKA_SSL_CHECK_HOSTNAME)"
        )
    refusal = cause.__cause__ if cause is not None else None
    if isinstance(refusal, ssl.SSLError) and refusal.reason in _CERTIFICATE_REFUSED:
        return FatalError(
            f"kafka: TLS: {servers} refused our client certificate ({refusal.reason}; check "
            f"KAFKA_SSL_CERTFILE={settings.ssl_certfile or '(none)'} and KAFKA_SSL_KEYFILE)"
        )
    return RetriableError(f"kafka: {servers} unreachable: {cause or exc}")


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
        self._group = settings.group_id or context.connector_name
        self._where = Where("kafka", settings, "READ", context.topics, self._group)

    @property
    def consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("reader not started")
        return self._consumer

    async def start(self, on_revoke: OnRevoke) -> None:
        s = self._settings
        self._consumer = AIOKafkaConsumer(
            **client_options(s),
            group_id=self._group,
            group_instance_id=s.group_instance_id,
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
        except kafka_errors.KafkaConnectionError as exc:
            await self._consumer.stop()
            cause = await _connect_once(s)
            raise _unreachable(exc, cause, s) from cause or exc
        except kafka_errors.KafkaError as exc:
            await self._consumer.stop()
            raise self._as_ours(exc) from exc

    def _as_ours(self, exc: kafka_errors.KafkaError) -> Exception:
        return translate(exc, self._where)

    async def batch(self) -> Batch:
        try:
            fetched = await self.consumer.getmany(
                timeout_ms=self._context.batch_max_wait_ms,
                max_records=self._context.batch_max_messages,
            )
        except kafka_errors.KafkaError as exc:
            raise self._as_ours(exc) from exc
        new = _new_tuple  # positional, without the named tuple's keyword handling
        records = [
            new(
                Record,
                (m.topic, m.partition, m.offset, m.key, m.value, tuple(m.headers), m.timestamp),
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
            raise self._as_ours(exc) from exc

    def assignment(self) -> set[TP]:
        return {(tp.topic, tp.partition) for tp in self.consumer.assignment()}

    async def end_offsets(self, partitions: set[TP]) -> dict[TP, int]:
        tps = [TopicPartition(t, p) for t, p in partitions]
        try:
            ends = await self.consumer.end_offsets(tps)
        except kafka_errors.KafkaError as exc:
            raise self._as_ours(exc) from exc
        return {(tp.topic, tp.partition): int(o) for tp, o in ends.items()}

    async def positions(self, partitions: set[TP]) -> dict[TP, int]:
        found: dict[TP, int] = {}
        for t, p in partitions:
            try:
                found[(t, p)] = int(await self.consumer.position(TopicPartition(t, p)))
            except kafka_errors.IllegalStateError:
                continue  # revoked meanwhile
            except kafka_errors.KafkaError as exc:
                raise self._as_ours(exc) from exc
        return found

    async def keepalive(self, seconds: float) -> None:
        consumer = self.consumer
        consumer.pause(*consumer.assignment())
        try:
            fetched = await consumer.getmany(timeout_ms=int(seconds * 1000), max_records=1)
        except kafka_errors.KafkaError as exc:
            raise self._as_ours(exc) from exc
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

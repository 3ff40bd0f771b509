"""The Kafka writer (`WRITER=kafka`): transform outputs produced to one output topic.

The output topic carries one type (`KAFKA_OUTPUT_TYPE`, a full protobuf name, or `bytes`),
like every topic this runtime reads: an entry whose message is of another type, or raw
bytes where a protobuf is expected, is poison (dead-lettered by the runner), never a
silent write. The whole batch is checked before anything is sent, so a poison entry does
not leave half a batch behind to be produced again.

Headers: the record's own (W3C `traceparent` included), with `content-type` set to
`application/x-protobuf; messageType=<KAFKA_OUTPUT_TYPE>` (what a connector reading the
topic checks) and `connector-source: <topic>/<partition>/<offset>/<n>` naming the record
(and its n-th output) it came from. The producer is idempotent with `acks=all`, so its own
retries never duplicate; a replay after a crash does produce the batch again (Kafka has no
upsert), and `connector-source` is how a consumer recognises the repeat.

Header keys that were not UTF-8 in the source record are produced as the bytes they were
read from (`connectors.kafka.raw_headers`).

Exactly-once (`KAFKA_OUTPUT_EXACTLY_ONCE=true`): each batch is produced in transactions,
one per input partition, that also commit the partition's consumed offset
(`connectors.kafka.transactions`); the writer then commits the offsets itself
(`commits_offsets`, read by the runner) and a `read_committed` consumer of the output sees
each input record's output once, across crashes and rebalances.

Partial success (the default mode): when some sends of a batch fail, those the broker
acknowledged are reported `stored`, and only the others are produced again.

Errors: a wrong type, raw bytes for a typed topic or an entry larger than a request is
`PoisonError` for that record, checked before anything is sent; an output topic that does
not exist at start is `FatalError` at once (the writer never creates it); every aiokafka
error goes through `connectors.kafka.translate`, the table the reader and the dead-letter
producer use too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from aiokafka import AIOKafkaProducer
from aiokafka import errors as kafka_errors
from google.protobuf.message import Message
from pydantic import Field, field_validator, model_validator

from connectors import (
    RAW,
    TYPE_HEADER,
    Entry,
    FatalError,
    Headers,
    KafkaSettings,
    PoisonError,
    RetriableError,
    TopicPartition,
    WriteBatch,
    WriterContext,
    WriterPlugin,
    host_ports,
    topic_name,
)
from connectors.kafka import (
    MAX_REQUEST_BYTES,
    PartitionTransactions,
    Prepared,
    Where,
    describe_topics,
    idempotent_producer,
    translate,
)

_log = logging.getLogger("connectors.writers.kafka")

SOURCE_HEADER = "connector-source"
_OURS = (TYPE_HEADER, SOURCE_HEADER)


class KafkaWriterSettings(KafkaSettings):
    """`KAFKA_OUTPUT_*` on top of the reader's own `KAFKA_*` connection settings, so the
    writer connects with the same TLS and SASL settings unless told otherwise."""

    output_topic: str = Field(description="a Kafka topic name")
    output_type: str = Field(
        pattern=r"^(bytes|[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*)$",
        description="a full protobuf message name (package.Message) or bytes",
    )
    output_bootstrap_servers: str | None = Field(
        None,
        pattern=r"^[^,\s]+:\d+(,[^,\s]+:\d+)*$",
        description="comma-separated host:port pairs of another cluster (unset: the input's)",
    )
    output_compression: Literal["none", "gzip"] = Field("none", description="none or gzip")
    output_linger_ms: int = Field(5, ge=0, le=60_000, description="milliseconds 0-60000")
    output_exactly_once: bool = Field(False, description="true or false")

    @field_validator("output_bootstrap_servers", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    _output_topic = field_validator("output_topic")(topic_name)
    _output_ports = field_validator("output_bootstrap_servers")(host_ports)

    @model_validator(mode="after")
    def _transactions_on_the_input_cluster(self) -> KafkaWriterSettings:
        other = self.output_bootstrap_servers
        if self.output_exactly_once and other and other != self.bootstrap_servers:
            raise ValueError(
                "KAFKA_OUTPUT_EXACTLY_ONCE=true needs the output on the input's cluster "
                "(KAFKA_OUTPUT_BOOTSTRAP_SERVERS unset or equal to KAFKA_BOOTSTRAP_SERVERS): "
                "the consumed offsets are committed in the output's transactions"
            )
        return self

    @property
    def servers(self) -> str:
        return self.output_bootstrap_servers or self.bootstrap_servers


class KafkaWriter:
    def __init__(self, settings: KafkaWriterSettings, context: WriterContext) -> None:
        self._settings = settings
        self._context = context
        self._where = Where(
            f"kafka at {settings.servers} topic {settings.output_topic}",
            settings,
            "WRITE",
            (settings.output_topic,),
        )
        self._producer: AIOKafkaProducer | None = None
        self._transactions: PartitionTransactions | None = None
        #: Read by the runner: with exactly-once, offsets are committed in the transactions.
        self.commits_offsets = settings.output_exactly_once
        self._type_header = (
            None
            if settings.output_type == RAW
            else f"application/x-protobuf; messageType={settings.output_type}".encode()
        )

    def _options(self) -> dict[str, Any]:
        s = self._settings
        return {
            "bootstrap_servers": s.servers,
            "client_id": f"{self._context.connector_name}-writer",
            "linger_ms": s.output_linger_ms,
            "compression_type": None if s.output_compression == "none" else s.output_compression,
        }

    async def start(self) -> None:
        s = self._settings
        producer = idempotent_producer(s, **self._options())
        try:
            await producer.start()
        except kafka_errors.KafkaError as exc:
            await producer.stop()
            raise translate(exc, self._where) from exc
        self._producer = producer
        topic = s.output_topic
        try:
            state = (await describe_topics(producer.client, [topic])).topics[topic]
            if state.missing:
                raise FatalError(
                    f"output topic {topic!r} (KAFKA_OUTPUT_TOPIC) does not exist at "
                    f"{s.servers}: the writer never creates it; create it first"
                )
            if state.error is not None:
                raise state.error(topic)
            if not state.allows("WRITE"):
                raise kafka_errors.TopicAuthorizationFailedError(topic)
            await producer.partitions_for(topic)
        except kafka_errors.KafkaError as exc:
            raise translate(exc, self._where) from exc
        if s.output_exactly_once:
            group = self._context.group_id or self._context.connector_name
            self._transactions = PartitionTransactions(
                s,
                prefix=self._context.connector_name,
                group_id=group,
                topic=topic,
                where=self._where,
                options=self._options(),
            )

    async def write(self, batch: WriteBatch) -> None:
        producer = self._producer
        if producer is None:
            raise FatalError("Kafka writer used before start()")
        prepared = self._prepare(batch.entries)
        if self._transactions is not None:
            await self._write_transactions(self._transactions, batch, prepared)
            return
        topic = self._settings.output_topic
        try:
            sent = [
                await producer.send(topic, value=value, key=key, headers=list(headers))
                for key, value, headers in prepared
            ]
        except kafka_errors.KafkaError as exc:
            raise translate(exc, self._where) from exc
        outcomes = await asyncio.gather(*sent, return_exceptions=True)
        failures = [(i, o) for i, o in enumerate(outcomes) if isinstance(o, BaseException)]
        if failures:
            raise self._partial(batch, outcomes, *failures[0])

    def _partial(
        self, batch: WriteBatch, outcomes: Sequence[Any], index: int, exc: BaseException
    ) -> Exception:
        """The first failed send as our error, with the entries the broker acknowledged as
        `stored` so that only the others are produced again."""
        stored = [i for i, o in enumerate(outcomes) if not isinstance(o, BaseException)]
        error = translate(exc, self._where, record=batch.entries[index].source)
        if isinstance(error, RetriableError):
            return RetriableError(str(error), error.retry_after, stored=stored)
        if isinstance(error, PoisonError):
            return PoisonError(error.stage, str(error), error.record, stored=stored)
        return error

    async def _write_transactions(
        self, transactions: PartitionTransactions, batch: WriteBatch, prepared: list[Prepared]
    ) -> None:
        """Produce each input partition's entries in that partition's transaction, left
        open until `commit`; entries below a partition's floor (produced and committed by
        its previous owner) are skipped."""
        partitions = sorted({(r.topic, r.partition) for r in batch.batch.records})
        await transactions.prepare(partitions)
        grouped: dict[TopicPartition, list[Prepared]] = {}
        for entry, record in zip(batch.entries, prepared, strict=True):
            source = (entry.source.topic, entry.source.partition)
            if entry.source.offset >= transactions.floor(source):
                grouped.setdefault(source, []).append(record)
        for partition, records in grouped.items():
            await transactions.send(partition, records)

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """With exactly-once: commit each partition's transaction with its next offset."""
        if self._transactions is None:
            raise FatalError("the Kafka writer commits offsets only with exactly-once")
        await self._transactions.commit(offsets)

    async def revoked(self, partitions: Sequence[TopicPartition]) -> None:
        if self._transactions is not None:
            await self._transactions.revoked(partitions)

    def _prepare(
        self, entries: Sequence[Entry]
    ) -> list[tuple[bytes | None, bytes | None, Headers]]:
        """Key, value and headers of every entry, or PoisonError for the first that does not
        belong on the output topic."""
        prepared = []
        previous, n = None, 0
        for entry in entries:
            source = entry.source
            n = n + 1 if source is previous else 0
            previous = source
            self._check_type(entry)
            origin = f"{source.topic}/{source.partition}/{source.offset}/{n}".encode()
            headers: Headers = tuple(
                (k, v) for k, v in (entry.headers or source.headers) if k not in _OURS
            )
            headers += ((SOURCE_HEADER, origin),)
            if self._type_header is not None and entry.value is not None:
                headers += ((TYPE_HEADER, self._type_header),)
            size = len(entry.key or b"") + len(entry.value or b"")
            size += sum(len(k) + len(v) for k, v in headers)
            if size > MAX_REQUEST_BYTES - 512:
                raise PoisonError(
                    "write", f"{size} bytes exceed the producer's {MAX_REQUEST_BYTES}", source
                )
            prepared.append((entry.key, entry.value, headers))
        return prepared

    def _check_type(self, entry: Entry) -> None:
        wanted = self._settings.output_type
        if wanted == RAW or entry.value is None:
            return  # raw topics take any bytes; a tombstone has no type
        message = entry.message
        if not isinstance(message, Message):
            raise PoisonError(
                "write",
                f"{self._settings.output_topic} carries {wanted}; the entry is raw bytes, "
                f"not a protobuf message",
                entry.source,
            )
        if message.DESCRIPTOR.full_name != wanted:
            raise PoisonError(
                "write",
                f"{self._settings.output_topic} carries {wanted} only; the transform returned "
                f"{message.DESCRIPTOR.full_name}",
                entry.source,
            )

    async def check(self) -> None:
        """A metadata request to the output cluster: cheap, and fails when it is gone."""
        if self._producer is None:
            raise FatalError("Kafka writer not started")
        try:
            await self._producer.client.fetch_all_metadata()
        except kafka_errors.KafkaError as exc:
            raise translate(exc, self._where) from exc

    async def close(self) -> None:
        if self._transactions is not None:
            await self._transactions.abort()
            await self._transactions.close()
            self._transactions = None
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


def build(settings: KafkaWriterSettings, context: WriterContext) -> KafkaWriter:
    return KafkaWriter(settings, context)


PLUGIN = WriterPlugin(name="kafka", settings=KafkaWriterSettings, build=build)

__all__ = ["PLUGIN", "KafkaWriter", "KafkaWriterSettings"]

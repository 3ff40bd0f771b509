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

Errors: a wrong type, raw bytes for a typed topic or an entry larger than a request is
`PoisonError` for that record, checked before anything is sent; an output topic that does
not exist at start is `FatalError` at once (the writer never creates it); every aiokafka
error goes through `connectors.kafka.translate`, the table the reader and the dead-letter
producer use too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Literal

from aiokafka import AIOKafkaProducer
from aiokafka import errors as kafka_errors
from google.protobuf.message import Message
from pydantic import Field, field_validator

from connectors import (
    RAW,
    TYPE_HEADER,
    Entry,
    FatalError,
    Headers,
    KafkaSettings,
    PoisonError,
    WriteBatch,
    WriterContext,
    WriterPlugin,
    host_ports,
    topic_name,
)
from connectors.kafka import (
    MAX_REQUEST_BYTES,
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

    @field_validator("output_bootstrap_servers", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    _output_topic = field_validator("output_topic")(topic_name)
    _output_ports = field_validator("output_bootstrap_servers")(host_ports)

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
        self._type_header = (
            None
            if settings.output_type == RAW
            else f"application/x-protobuf; messageType={settings.output_type}".encode()
        )

    async def start(self) -> None:
        s = self._settings
        producer = idempotent_producer(
            s,
            bootstrap_servers=s.servers,
            client_id=f"{self._context.connector_name}-writer",
            linger_ms=s.output_linger_ms,
            compression_type=None if s.output_compression == "none" else s.output_compression,
        )
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

    async def write(self, batch: WriteBatch) -> None:
        producer = self._producer
        if producer is None:
            raise FatalError("Kafka writer used before start()")
        prepared = self._prepare(batch.entries)
        topic = self._settings.output_topic
        try:
            sent = [
                await producer.send(topic, value=value, key=key, headers=list(headers))
                for key, value, headers in prepared
            ]
            await asyncio.gather(*sent)
        except kafka_errors.KafkaError as exc:
            raise translate(exc, self._where) from exc

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
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


def build(settings: KafkaWriterSettings, context: WriterContext) -> KafkaWriter:
    return KafkaWriter(settings, context)


PLUGIN = WriterPlugin(name="kafka", settings=KafkaWriterSettings, build=build)

__all__ = ["PLUGIN", "KafkaWriter", "KafkaWriterSettings"]

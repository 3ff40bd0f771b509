"""`Producer`: send protobuf messages to the topics of a catalog, one type per topic.

::

    from connectors import Producer

    async with Producer.from_env() as producer:          # KAFKA_*, TOPIC_CATALOG
        await producer.send("orders.created", OrderCreated(id=1), key=b"1")

`send` refuses a message whose type is not the topic's (`TypeError` naming both, before
anything is sent), sets the `content-type` header naming the type (what `TopicSchema`
checks on the consumer side) and the current trace context (W3C `traceparent`, when the
service traces), and returns once the brokers acknowledged the record. Records sent
concurrently travel in one batch (`linger_ms`); `submit` + `flush` batch without awaiting
each record. The client is the runtime's idempotent producer (`acks=all`, no duplicate
from its own retries), connected with the same `KAFKA_*` variables as every command.
Kafka's refusals come out as the runtime's errors (`FatalError` naming the permission
and the topic, `RetriableError`, `PoisonError`) through `connectors.kafka.translate`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aiokafka import errors as kafka_errors
from google.protobuf.message import Message

from connectors.config.catalog.bind import catalog_types
from connectors.config.settings import KafkaSettings, load
from connectors.core.errors import ConfigError, FatalError, Problem
from connectors.core.records import RAW, TYPE_HEADER
from connectors.kafka import Where, describe_topics, idempotent_producer, translate
from connectors.producer import metrics

Headers = Sequence[tuple[str, bytes]]


def type_header(type_name: str) -> tuple[str, bytes]:
    return (TYPE_HEADER, f"application/x-protobuf; messageType={type_name}".encode())


class _Carrier(list[tuple[str, bytes]]):
    def set(self, key: str, value: str) -> None:  # noqa: A003 - the propagator's protocol
        self.append((key, value.encode("latin-1")))


class Producer:
    """Typed records to Kafka; see the module docstring. Not started until `start()` (or
    `async with`)."""

    def __init__(self, types: Mapping[str, str], kafka: KafkaSettings, **options: Any) -> None:
        self.types = dict(types)
        self.kafka = kafka
        self._options = {"linger_ms": 5, **options}
        self._client: Any = None
        self._checked: set[str] = set()
        self._pending: list[asyncio.Future[Any]] = []

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **options: Any) -> Producer:
        """Configured like every command: `KAFKA_*` for the cluster, `TOPIC_CATALOG` (a
        catalog folder) for the topics and their types. ConfigError when either is wrong."""
        import os

        env = dict(os.environ if environ is None else environ)
        problems: list[Problem] = []
        kafka = load(KafkaSettings, env, problems)
        root = env.get("TOPIC_CATALOG")
        if not root:
            problems.append(Problem("TOPIC_CATALOG", "a catalog folder naming each topic's type"))
        if problems or kafka is None or not root:
            raise ConfigError(problems)
        return cls(catalog_types(Path(root)), kafka, **options)

    @property
    def _producer(self) -> Any:
        if self._client is None:
            raise RuntimeError("the producer is not started: `await producer.start()` first")
        return self._client

    async def start(self) -> None:
        """Connect (made here, not in the constructor: aiokafka binds a client to the
        running loop)."""
        self._client = idempotent_producer(self.kafka, **self._options)
        try:
            await self._client.start()
        except (kafka_errors.KafkaError, OSError) as exc:
            await self._client.stop()
            self._client = None
            where = Where("producer", self.kafka, "WRITE", tuple(sorted(self.types)))
            raise translate(exc, where) from exc

    async def stop(self) -> None:
        """Wait for every record sent, then close."""
        if self._client is None:
            return
        try:
            await self.flush()
        finally:
            await self._client.stop()
            self._client = None

    async def __aenter__(self) -> Producer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def check(self, topic: str, message: Message) -> str:
        """The topic's type name; TypeError if `message` is not of it, before any send."""
        expected = self.types.get(topic)
        if expected is None:
            metrics.ERRORS.labels(topic, "unknown_topic").inc()
            raise TypeError(
                f"topic {topic!r} is not in the catalog; known: {', '.join(sorted(self.types))}"
            )
        actual = message.DESCRIPTOR.full_name if isinstance(message, Message) else None
        if expected == RAW and isinstance(message, bytes):
            return expected
        if actual != expected:
            metrics.ERRORS.labels(topic, "type").inc()
            given = actual or type(message).__name__
            raise TypeError(f"topic {topic!r} carries {expected} only; got a {given}")
        return expected

    async def submit(
        self, topic: str, message: Message, *, key: bytes | None = None, headers: Headers = ()
    ) -> asyncio.Future[Any]:
        """Queue one record; its future resolves when the brokers acknowledged it."""
        type_name = self.check(topic, message)
        await self._require(topic)
        carrier = _Carrier(headers)
        if type_name != RAW:
            carrier.append(type_header(type_name))
        _inject(carrier)
        value = message if isinstance(message, bytes) else message.SerializeToString()
        started = time.perf_counter()
        try:
            future = await self._producer.send(topic, value=value, key=key, headers=list(carrier))
        except (kafka_errors.KafkaError, OSError) as exc:
            raise self._failed(topic, exc) from exc
        done: asyncio.Future[Any] = asyncio.ensure_future(self._acked(topic, future, started))
        self._pending.append(done)
        return done

    async def send(
        self, topic: str, message: Message, *, key: bytes | None = None, headers: Headers = ()
    ) -> Any:
        """Send one record and return once the brokers acknowledged it (its metadata)."""
        return await (await self.submit(topic, message, key=key, headers=headers))

    async def flush(self) -> None:
        """Return once every submitted record is acknowledged; raises the first failure."""
        pending, self._pending = self._pending, []
        if pending:
            await asyncio.gather(*pending)

    async def _acked(self, topic: str, future: Any, started: float) -> Any:
        try:
            metadata = await future
        except (kafka_errors.KafkaError, OSError) as exc:
            raise self._failed(topic, exc) from exc
        metrics.SEND_SECONDS.labels(topic).observe(time.perf_counter() - started)
        metrics.RECORDS_SENT.labels(topic).inc()
        return metadata

    def _failed(self, topic: str, exc: BaseException) -> Exception:
        metrics.ERRORS.labels(topic, type(exc).__name__).inc()
        return translate(exc, Where("producer", self.kafka, "WRITE", (topic,)), stage="produce")

    async def _require(self, topic: str) -> None:
        """Once per topic: it exists and we may see it, else one line saying what is wrong
        (rather than a send that waits for metadata until it times out)."""
        if topic in self._checked:
            return
        try:
            state = (await describe_topics(self._producer.client, [topic])).topics.get(topic)
        except (kafka_errors.KafkaError, OSError) as exc:
            raise self._failed(topic, exc) from exc
        if state is None or state.missing:
            metrics.ERRORS.labels(topic, "missing_topic").inc()
            raise FatalError(f"producer: topic {topic!r} does not exist: apply the catalog "
                             "(connector topics apply)")  # fmt: skip
        if state.error is not None:
            raise self._failed(topic, state.error(topic))
        self._checked.add(topic)


def _inject(carrier: _Carrier) -> None:
    """The current trace context into `carrier` (nothing when no span is current)."""
    from opentelemetry import propagate  # the API alone; cheap once imported

    propagate.inject(carrier, setter=carrier)  # type: ignore[arg-type]

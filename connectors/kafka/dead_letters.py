"""Dead letters: poison records set aside on a Kafka topic, with why and where from.

A dead letter keeps the original key, value and headers (header keys that are not UTF-8
byte for byte), and adds `dlq.*` headers naming the stage that failed, the error, and the
record's origin, so that `connector dlq replay` can send it back once the cause is fixed.
Dead letters are flushed (acks=all) before the batch's offsets are committed: a record is
either written, dead-lettered, or replayed.

The dead-letter topic is checked at start (`start()`, before anything is consumed): it must
exist and be writable, or the connector stops there with one line saying how to create it,
or creates it when `DLQ_CREATE=true` (`DLQ_PARTITIONS`, `DLQ_REPLICATION_FACTOR`). A
connector that meets its first poison record after weeks of running thus fails at deploy
time, not at that moment.

Any record the input topic accepted can be dead-lettered: the `dlq.*` headers make a record
near the broker's size limit too large for the dead-letter topic, so such a letter's value
(and, if that is not enough, its key) is cut to fit the topic's `max.message.bytes`, and a
`dlq.truncated` header (`dlq.truncated.key` for the key) gives the original size in bytes.
The position headers are kept, so the original can be found in the input topic while
retention keeps it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka import errors as kafka_errors

from connectors.config.settings import DeadLetterSettings, KafkaSettings
from connectors.core.dead_letters import DeadLetter
from connectors.core.errors import FatalError, PoisonError
from connectors.kafka.bootstrap import diagnose
from connectors.kafka.errors import AUTHENTICATION, Where, translate
from connectors.kafka.metadata import TopicState, describe_topics
from connectors.kafka.producer import idempotent_producer
from connectors.kafka.raw_headers import LenientBuilder
from connectors.kafka.topics import DEFAULT_MAX_MESSAGE_BYTES, create_topic, max_message_bytes

_log = logging.getLogger("connectors.kafka.dead_letters")

H_TRUNCATED = "dlq.truncated"
H_TRUNCATED_KEY = "dlq.truncated.key"
#: The largest request the dead-letter producer may send: above any topic's usual limit,
#: so that the topic's own `max.message.bytes` is what bounds a dead letter.
MAX_DEAD_LETTER_BYTES = 64 * 1024 * 1024
_CREATE_TIMEOUT_MS = 30_000

Letter = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]


def fit(
    key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]], limit: int
) -> Letter:
    """Key, value and headers of one dead letter within `limit` bytes (a record batch of
    it alone): the value cut first, then the key, each cut said in a header."""
    size = LenientBuilder.estimate_size_in_bytes
    if size(key, value, headers) <= limit:
        return key, value, headers
    headers = [*headers, (H_TRUNCATED, str(len(value or b"")).encode())]
    excess = size(key, value, headers) - limit
    if value is not None and excess <= len(value):
        return key, value[: len(value) - excess], headers
    value = b"" if value is not None else None
    headers = [*headers, (H_TRUNCATED_KEY, str(len(key or b"")).encode())]
    excess = size(key, value, headers) - limit
    if key is not None and excess <= len(key):
        return key[: len(key) - excess], value, headers
    raise FatalError(f"a dead letter's headers alone exceed {limit} bytes")


class KafkaDeadLetters:
    """Dead letters produced to `topic` with the idempotent producer and acks=all.

    `required` is false when nothing may be dead-lettered (`ON_ERROR=fail`): then nothing
    is checked at start. `settings` (`DLQ_*`) says whether to create a missing topic.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        topic: str,
        connector: str,
        dead_letter: DeadLetterSettings | None = None,
        *,
        required: bool = True,
    ) -> None:
        self.topic = topic
        self._connector = connector
        self._settings = settings
        self._dead_letter = dead_letter or DeadLetterSettings.model_validate({})
        self._required = required
        self._producer: AIOKafkaProducer | None = None
        self._limit = DEFAULT_MAX_MESSAGE_BYTES
        self._where = Where(
            f"dead-letter topic {topic!r} cannot be written", settings, "WRITE", (topic,)
        )

    async def start(self) -> None:
        """Check that the topic exists and may be written (creating it when told to), and
        learn its size limit; FatalError with one line saying what to do otherwise."""
        if not self._required:
            return
        producer = await self._ready()
        try:
            await self._check(producer)
        except kafka_errors.KafkaError as exc:
            raise translate(exc, self._where) from exc

    async def _check(self, producer: AIOKafkaProducer) -> None:
        described = await describe_topics(producer.client, [self.topic])
        state = described.topics[self.topic]
        if state.missing:
            if not self._dead_letter.create:
                raise FatalError(self._missing())
            created = await self._create(producer, described.controller)
            state = await self._until_ready(producer)
        else:
            created = await max_message_bytes(producer.client, described.controller, self.topic)
        self._raise_unless_writable(state)
        self._limit = min(created or DEFAULT_MAX_MESSAGE_BYTES, MAX_DEAD_LETTER_BYTES)

    async def _until_ready(self, producer: AIOKafkaProducer) -> TopicState:
        """The created topic once every partition has a leader (or as it is after
        `_CREATE_TIMEOUT_MS`)."""
        deadline = time.monotonic() + _CREATE_TIMEOUT_MS / 1000
        while True:
            state = (await describe_topics(producer.client, [self.topic])).topics[self.topic]
            if state.ready or time.monotonic() > deadline:
                return state
            await asyncio.sleep(0.1)

    def _raise_unless_writable(self, state: TopicState) -> None:
        if state.error is not None:
            raise translate(state.error(self.topic), self._where)
        if not state.allows("WRITE"):
            raise translate(kafka_errors.TopicAuthorizationFailedError(self.topic), self._where)

    def _missing(self) -> str:
        d = self._dead_letter
        replication = (
            "" if d.replication_factor < 0 else f" --replication-factor {d.replication_factor}"
        )
        return (
            f"dead-letter topic {self.topic!r} (DLQ_TOPIC) does not exist, and ON_ERROR=dlq "
            f"needs it: create it (kafka-topics.sh --bootstrap-server "
            f"{self._settings.bootstrap_servers} --create --topic {self.topic} --partitions "
            f"{d.partitions}{replication}) or set DLQ_CREATE=true to have the connector create "
            f"it (DLQ_PARTITIONS, DLQ_REPLICATION_FACTOR)"
        )

    async def _create(self, producer: AIOKafkaProducer, node: int) -> int | None:
        d = self._dead_letter
        _log.info(
            "creating dead-letter topic %r (DLQ_CREATE=true): %d partitions, replication %s",
            self.topic,
            d.partitions,
            "the broker's default" if d.replication_factor < 0 else d.replication_factor,
        )
        where = Where(
            f"dead-letter topic {self.topic!r} cannot be created with DLQ_PARTITIONS="
            f"{d.partitions} and DLQ_REPLICATION_FACTOR={d.replication_factor}",
            self._settings, "CREATE", (self.topic,),
        )  # fmt: skip
        try:
            return await create_topic(
                producer.client, node, self.topic, d.partitions, d.replication_factor,
                _CREATE_TIMEOUT_MS,
            )  # fmt: skip
        except kafka_errors.KafkaError as exc:
            raise translate(exc, where) from exc

    async def _ready(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = idempotent_producer(
                self._settings,
                client_id=f"{self._connector}-dlq",
                max_request_size=MAX_DEAD_LETTER_BYTES,
            )
            try:
                await producer.start()
            except BaseException as exc:
                await producer.stop()
                raise await self._not_started(exc) from exc
            self._producer = producer
        return self._producer

    async def _not_started(self, exc: BaseException) -> BaseException:
        """Why the producer could not start. Reaching the cluster (TLS, credentials) is
        not about the dead-letter topic: that is said as the reader would say it."""
        if isinstance(exc, kafka_errors.KafkaConnectionError):
            return await diagnose(exc, self._settings)
        if isinstance(exc, AUTHENTICATION):
            return translate(exc, Where("kafka", self._settings))
        if isinstance(exc, Exception):
            return translate(exc, self._where)
        return exc

    async def send(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        producer = await self._ready()
        try:
            futures = []
            for letter in letters:
                record = letter.record
                key, value, headers = fit(
                    record.key, record.value, letter.headers(self._connector), self._limit
                )
                futures.append(
                    await producer.send(self.topic, value=value, key=key, headers=headers)
                )
            for future in futures:
                await future
        except Exception as exc:
            error = translate(exc, self._where)
            if isinstance(error, PoisonError):
                raise FatalError(str(error)) from exc
            raise error from exc

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

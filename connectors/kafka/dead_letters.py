"""Dead letters: poison records set aside on a Kafka topic, with why and where from.

A dead letter keeps the original key, value and headers, and adds `dlq.*` headers naming
the stage that failed, the error, and the record's origin, so that `connector dlq replay`
can send it back once the cause is fixed. Dead letters are flushed (acks=all) before the
batch's offsets are committed: a record is either written, dead-lettered, or replayed.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from connectors.config.settings import KafkaSettings
from connectors.core.dead_letters import DeadLetter
from connectors.core.errors import FatalError, PoisonError
from connectors.kafka.errors import Where, translate
from connectors.kafka.producer import idempotent_producer


class KafkaDeadLetters:
    """Dead letters produced to `topic` with the idempotent producer and acks=all."""

    def __init__(self, settings: KafkaSettings, topic: str, connector: str) -> None:
        self.topic = topic
        self._connector = connector
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._where = Where(
            f"dead-letter topic {topic!r} cannot be written", settings, "WRITE", (topic,)
        )

    async def start(self) -> None:
        """Nothing connects until the first dead letter: most connectors never need one."""

    async def _ready(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = idempotent_producer(self._settings, client_id=f"{self._connector}-dlq")
            try:
                await producer.start()
            except Exception as exc:
                await producer.stop()
                raise translate(exc, self._where) from exc
            self._producer = producer
        return self._producer

    async def send(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        producer = await self._ready()
        try:
            futures = [
                await producer.send(
                    self.topic,
                    value=letter.record.value,
                    key=letter.record.key,
                    headers=letter.headers(self._connector),
                )
                for letter in letters
            ]
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

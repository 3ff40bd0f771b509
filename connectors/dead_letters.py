"""Dead letters: poison records set aside on a Kafka topic, with why and where from.

A dead letter keeps the original key, value and headers, and adds `dlq.*` headers naming
the stage that failed, the error, and the record's origin, so that `connector dlq replay`
can send it back once the cause is fixed. Dead letters are flushed (acks=all) before the
batch's offsets are committed: a record is either written, dead-lettered, or replayed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka import errors as kafka_errors

from connectors.config import KafkaSettings
from connectors.errors import FatalError, RetriableError
from connectors.records import Record

_DENIED = (
    kafka_errors.TopicAuthorizationFailedError,
    kafka_errors.ClusterAuthorizationFailedError,
)

PREFIX = "dlq."
H_STAGE = "dlq.stage"
H_ERROR_CLASS = "dlq.error.class"
H_ERROR_MESSAGE = "dlq.error.message"
H_TOPIC = "dlq.original.topic"
H_PARTITION = "dlq.original.partition"
H_OFFSET = "dlq.original.offset"
H_TIMESTAMP = "dlq.original.timestamp"
H_CONNECTOR = "dlq.connector"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    record: Record
    stage: str
    error_class: str
    message: str

    def headers(self, connector: str) -> list[tuple[str, bytes]]:
        r = self.record
        own = [(k, v) for k, v in r.headers if not k.startswith(PREFIX)]
        return own + [
            (H_STAGE, self.stage.encode()),
            (H_ERROR_CLASS, self.error_class.encode()),
            (H_ERROR_MESSAGE, self.message[:4000].encode("utf-8", "replace")),
            (H_TOPIC, r.topic.encode()),
            (H_PARTITION, str(r.partition).encode()),
            (H_OFFSET, str(r.offset).encode()),
            (H_TIMESTAMP, str(r.timestamp_ms).encode()),
            (H_CONNECTOR, connector.encode()),
        ]


class DeadLetterSink(Protocol):
    async def start(self) -> None: ...

    async def send(self, letters: Sequence[DeadLetter]) -> None:
        """Store every letter durably or raise FatalError."""

    async def close(self) -> None: ...


class KafkaDeadLetters:
    """Dead letters produced to `topic` with the idempotent producer and acks=all."""

    def __init__(self, settings: KafkaSettings, topic: str, connector: str) -> None:
        self.topic = topic
        self._connector = connector
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        """Nothing connects until the first dead letter: most connectors never need one."""

    async def _ready(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(
                **self._settings.client_options(),
                client_id=f"{self._connector}-dlq",
                enable_idempotence=True,
                acks="all",
            )
            try:
                await producer.start()
            except kafka_errors.KafkaError as exc:
                await producer.stop()
                if isinstance(exc, _DENIED):
                    raise self._denied(exc) from exc
                raise RetriableError(f"dead-letter producer cannot connect: {exc}") from exc
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
        except (kafka_errors.KafkaTimeoutError, kafka_errors.KafkaConnectionError) as exc:
            raise RetriableError(f"dead-letter topic {self.topic!r} unreachable: {exc}") from exc
        except _DENIED as exc:
            raise self._denied(exc) from exc
        except kafka_errors.KafkaError as exc:
            raise FatalError(
                f"dead-letter topic {self.topic!r} cannot be written: {type(exc).__name__}: {exc}"
            ) from exc

    def _denied(self, exc: kafka_errors.KafkaError) -> FatalError:
        """A refused WRITE, named as such. Without WRITE on any topic the idempotent
        producer is refused earlier, at InitProducerId, as a cluster authorization. The
        broker answers a topic that does not exist and may not be created (no CREATE) the
        same way as one that may not be written, so the line says both."""
        s = self._settings
        sasl = s.security_protocol.startswith("SASL_")
        who = f"user {s.sasl_username!r}" if sasl else "this client's principal"
        how = (
            "; the idempotent producer needs WRITE on the topic (or IDEMPOTENT_WRITE on "
            "the cluster)"
            if isinstance(exc, kafka_errors.ClusterAuthorizationFailedError)
            else "; if the topic does not exist yet, creating it needs CREATE"
        )
        return FatalError(
            f"dead-letter topic {self.topic!r} cannot be written: not authorized: WRITE on "
            f"topic {self.topic!r} denied to {who} ({type(exc).__name__}{how})"
        )

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


class Breaker:
    """Trips when more than `max_ratio` of the last `window` records were poison.

    It waits for a tenth of the window (at least 10 records) before judging, so the first
    bad record of a run does not count as 100 % poison.
    """

    def __init__(self, max_ratio: float, window: int) -> None:
        self._max_ratio = max_ratio
        self._window = window
        self._seen = 0
        # Where the poison records of the window are, by outcome number: healthy records
        # are only counted, so a batch of them costs one call and no per-record work.
        self._poison_at: deque[int] = deque()
        self._min = max(10, window // 10)

    def record(self, poison: bool) -> None:
        if poison:
            self._poison_at.append(self._seen)
        self._seen += 1
        self._expire()

    def record_ok(self, count: int) -> None:
        """`count` healthy records in a row."""
        self._seen += count
        self._expire()

    def _expire(self) -> None:
        oldest = self._seen - self._window
        poison_at = self._poison_at
        while poison_at and poison_at[0] < oldest:
            poison_at.popleft()

    @property
    def ratio(self) -> float:
        counted = min(self._seen, self._window)
        return len(self._poison_at) / counted if counted else 0.0

    @property
    def tripped(self) -> bool:
        return min(self._seen, self._window) >= self._min and self.ratio > self._max_ratio

"""A dead letter and where dead letters go: the contract, without any Kafka client."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from connectors.core.records import Record

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
        # A replayed dead letter that fails again keeps the position it was first read
        # from: writers order it by that position, never by where it was replayed to.
        first = {k: v for k, v in r.headers if k in (H_TOPIC, H_PARTITION, H_OFFSET)}
        if len(first) < 3:
            first = {
                H_TOPIC: r.topic.encode(),
                H_PARTITION: str(r.partition).encode(),
                H_OFFSET: str(r.offset).encode(),
            }
        return own + [
            (H_STAGE, self.stage.encode()),
            (H_ERROR_CLASS, self.error_class.encode()),
            (H_ERROR_MESSAGE, self.message[:4000].encode("utf-8", "replace")),
            (H_TOPIC, first[H_TOPIC]),
            (H_PARTITION, first[H_PARTITION]),
            (H_OFFSET, first[H_OFFSET]),
            (H_TIMESTAMP, str(r.timestamp_ms).encode()),
            (H_CONNECTOR, connector.encode()),
        ]


class DeadLetterSink(Protocol):
    async def start(self) -> None: ...

    async def send(self, letters: Sequence[DeadLetter]) -> None:
        """Store every letter durably or raise FatalError."""

    async def close(self) -> None: ...

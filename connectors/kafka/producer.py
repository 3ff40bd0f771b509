"""The one way the runtime produces: idempotent, acks=all, connected like every client."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaProducer

from connectors.config.settings import KafkaSettings
from connectors.kafka.options import client_options

#: The broker's default `message.max.bytes` (1 MiB); a producer request may carry a batch
#: up to this size, so the largest record the broker accepts can always be produced again.
MAX_REQUEST_BYTES = 1_048_576


def idempotent_producer(settings: KafkaSettings, **options: Any) -> AIOKafkaProducer:
    """A producer whose own retries never duplicate (enable_idempotence, acks=all).

    `options` override or extend the defaults (client_id, linger_ms, bootstrap_servers of
    another cluster, ...). Not started: the caller starts it inside its own error handling.
    """
    merged: dict[str, Any] = {
        **client_options(settings),
        "enable_idempotence": True,
        "acks": "all",
        "max_request_size": MAX_REQUEST_BYTES,
    }
    merged.update(options)
    return AIOKafkaProducer(**merged)

"""Real services for tests: Kafka (KRaft, from Maven Central jars), Redis and kcat.

Not part of the wheel: tests and scripts import it from the repository root, so the
connector is exercised against the same brokers and tools that production uses rather
than against mocks. Names load lazily, so ``python -m harness.kafka`` does not import
its own module twice.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.kafka import (
        KafkaBroker,
        consumer_group_offsets,
        create_topic,
        create_topic_async,
        fetch_jars,
        run_tool,
    )
    from harness.kcat import produce
    from harness.ports import free_port
    from harness.redis import RedisServer

__all__ = [
    "KafkaBroker",
    "RedisServer",
    "consumer_group_offsets",
    "create_topic",
    "create_topic_async",
    "fetch_jars",
    "free_port",
    "produce",
    "run_tool",
]

_HOMES = {
    "KafkaBroker": "harness.kafka",
    "consumer_group_offsets": "harness.kafka",
    "create_topic": "harness.kafka",
    "create_topic_async": "harness.kafka",
    "fetch_jars": "harness.kafka",
    "run_tool": "harness.kafka",
    "produce": "harness.kcat",
    "free_port": "harness.ports",
    "RedisServer": "harness.redis",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)

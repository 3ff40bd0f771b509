"""Creating a topic and reading its size limit, through an existing client's connections.

Used for the dead-letter topic: created at start only when `DLQ_CREATE=true` says so, and
its `max.message.bytes` read so that a dead letter is cut to fit rather than refused.

aiokafka's admin requests stop at CreateTopics v3, which cannot ask for the broker's
default replication factor (-1 needs v4); v5 is declared here with aiokafka's protocol
types, as `connectors.kafka.metadata` does for Metadata v12.
"""

from __future__ import annotations

from typing import Any

from aiokafka import errors as kafka_errors
from aiokafka.protocol.admin import DescribeConfigsRequest
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    Boolean,
    CompactArray,
    CompactString,
    Int8,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

#: Kafka's default `max.message.bytes` of a topic (the broker's `message.max.bytes`).
DEFAULT_MAX_MESSAGE_BYTES = 1_048_588
_TOPIC_RESOURCE = 2  # ConfigResource type TOPIC
_TOPIC_ALREADY_EXISTS = 36


class CreateTopicsResponse_v5(Response):  # type: ignore[misc]  # noqa: N801 - aiokafka's naming
    API_KEY = 19
    API_VERSION = 5
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "topics",
            CompactArray(
                ("name", CompactString("utf-8")),
                ("error_code", Int16),
                ("error_message", CompactString("utf-8")),
                ("num_partitions", Int32),
                ("replication_factor", Int16),
                (
                    "configs",
                    CompactArray(
                        ("name", CompactString("utf-8")),
                        ("value", CompactString("utf-8")),
                        ("read_only", Boolean),
                        ("config_source", Int8),
                        ("is_sensitive", Boolean),
                        ("tags", TaggedFields),
                    ),
                ),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class CreateTopicsRequest_v5(RequestStruct):  # type: ignore[misc]  # noqa: N801 - aiokafka's naming
    FLEXIBLE_VERSION = True
    API_KEY = 19
    API_VERSION = 5
    RESPONSE_TYPE = CreateTopicsResponse_v5
    SCHEMA = Schema(
        (
            "topics",
            CompactArray(
                ("name", CompactString("utf-8")),
                ("num_partitions", Int32),
                ("replication_factor", Int16),
                (
                    "assignments",
                    CompactArray(
                        ("partition_index", Int32),
                        ("broker_ids", CompactArray(Int32)),
                        ("tags", TaggedFields),
                    ),
                ),
                (
                    "configs",
                    CompactArray(
                        ("name", CompactString("utf-8")),
                        ("value", CompactString("utf-8")),
                        ("tags", TaggedFields),
                    ),
                ),
                ("tags", TaggedFields),
            ),
        ),
        ("timeout_ms", Int32),
        ("validate_only", Boolean),
        ("tags", TaggedFields),
    )


class CreateTopicRequest(Request[CreateTopicsRequest_v5]):  # type: ignore[misc]
    API_KEY = 19

    def __init__(self, name: str, partitions: int, replication: int, timeout_ms: int) -> None:
        self._topic: tuple[Any, ...] = (name, partitions, replication, [], [], {})
        self._timeout_ms = timeout_ms

    def build(self, request_struct_class: type[CreateTopicsRequest_v5]) -> CreateTopicsRequest_v5:
        return request_struct_class([self._topic], self._timeout_ms, False, {})


def _max_message_bytes(configs: Any) -> int | None:
    for entry in configs or ():
        if entry[0] == "max.message.bytes" and entry[1] is not None:
            return int(entry[1])
    return None


async def create_topic(
    client: Any, node: int, name: str, partitions: int, replication: int, timeout_ms: int
) -> int | None:
    """Create `name`; its `max.message.bytes` when the broker said (None otherwise).

    A topic that exists already (created meanwhile by someone else) is not an error; any
    other refusal raises aiokafka's error for its code, the broker's message as its text.
    """
    request = CreateTopicRequest(name, partitions, replication, timeout_ms)
    try:
        response = await client.send(node, request)
    except NotImplementedError as exc:
        raise kafka_errors.UnsupportedVersionError(
            "the brokers answer no CreateTopics request of version 5 (Kafka 2.4+)"
        ) from exc
    for topic in response.topics:
        _name, code, message, *_, configs, _tags = topic
        if code == _TOPIC_ALREADY_EXISTS:
            return None
        if code != 0:
            raise kafka_errors.for_code(code)(message or name)
        return _max_message_bytes(configs)
    return None


async def max_message_bytes(client: Any, node: int, name: str) -> int | None:
    """The topic's `max.message.bytes`, or None when it may not be read (no
    DESCRIBE_CONFIGS permission) or the broker did not say."""
    request = DescribeConfigsRequest([(_TOPIC_RESOURCE, name, ["max.message.bytes"])])
    response = await client.send(node, request)
    for resource in response.resources:
        code, _message, _type, _name, entries = resource[:5]
        if code != 0:
            return None
        return _max_message_bytes(entries)
    return None

"""What the brokers say about a few topics: whether each exists, its id, what we may do.

aiokafka asks for metadata up to version 5, which has neither topic ids (Kafka 2.8, v10)
nor the operations the caller may perform on a topic (v8). Version 12 is declared here with
aiokafka's own protocol types and sent through an existing client's connections, so it
uses the same TLS, SASL and version negotiation as every other request, and never creates
a topic by naming it (`allow_auto_topic_creation` is false).

A topic id names one incarnation of a topic: deleted and created again under the same name,
the topic gets a new id. It is rendered as Kafka's tools print it (`kafka-topics --describe`
shows `TopicId: <22 characters>`, URL-safe base64 of the 16 bytes, unpadded).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from aiokafka import errors as kafka_errors
from aiokafka.protocol.abstract import AbstractType
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    Boolean,
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

#: The id of no topic (a request by name carries it).
NO_ID = bytes(16)
#: Bit of `topic_authorized_operations` for WRITE (Kafka's AclOperation codes).
OPERATION_CODES = {"READ": 3, "WRITE": 4, "CREATE": 5, "DESCRIBE": 8}
_NOT_ASKED = -(2**31)  # what the broker answers when authorized operations were not asked


class _Uuid(AbstractType[bytes]):  # type: ignore[misc]
    """Kafka's UUID: 16 raw bytes (aiokafka 0.14 has no such type)."""

    @classmethod
    def encode(cls, value: bytes) -> bytes:
        if len(value) != 16:
            raise ValueError(f"a UUID is 16 bytes, not {len(value)}")
        return value

    @classmethod
    def decode(cls, data: BytesIO) -> bytes:
        value = data.read(16)
        if len(value) != 16:
            raise ValueError("Buffer underrun decoding UUID")
        return value


class MetadataResponse_v12(Response):  # type: ignore[misc]  # noqa: N801 - aiokafka's naming
    API_KEY = 3
    API_VERSION = 12
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "brokers",
            CompactArray(
                ("node_id", Int32),
                ("host", CompactString("utf-8")),
                ("port", Int32),
                ("rack", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("cluster_id", CompactString("utf-8")),
        ("controller_id", Int32),
        (
            "topics",
            CompactArray(
                ("error_code", Int16),
                ("name", CompactString("utf-8")),
                ("topic_id", _Uuid),
                ("is_internal", Boolean),
                (
                    "partitions",
                    CompactArray(
                        ("error_code", Int16),
                        ("partition_index", Int32),
                        ("leader_id", Int32),
                        ("leader_epoch", Int32),
                        ("replica_nodes", CompactArray(Int32)),
                        ("isr_nodes", CompactArray(Int32)),
                        ("offline_replicas", CompactArray(Int32)),
                        ("tags", TaggedFields),
                    ),
                ),
                ("topic_authorized_operations", Int32),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class MetadataRequest_v12(RequestStruct):  # type: ignore[misc]  # noqa: N801 - aiokafka's naming
    FLEXIBLE_VERSION = True
    API_KEY = 3
    API_VERSION = 12
    RESPONSE_TYPE = MetadataResponse_v12
    SCHEMA = Schema(
        (
            "topics",
            CompactArray(
                ("topic_id", _Uuid),
                ("name", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("allow_auto_topic_creation", Boolean),
        ("include_topic_authorized_operations", Boolean),
        ("tags", TaggedFields),
    )


class TopicMetadataRequest(Request[MetadataRequest_v12]):  # type: ignore[misc]
    """Metadata of the named topics, with their ids and our permissions on them."""

    API_KEY = 3

    def __init__(self, names: list[str]) -> None:
        self._names = names

    def build(self, request_struct_class: type[MetadataRequest_v12]) -> MetadataRequest_v12:
        topics: list[tuple[Any, ...]] = [(NO_ID, name, {}) for name in self._names]
        return request_struct_class(topics, False, True, {})


def topic_id_text(raw: bytes) -> str:
    """Kafka's rendering of a UUID (`Uuid.toString`): URL-safe base64, no padding."""
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


@dataclass(frozen=True, slots=True)
class TopicState:
    """One topic as the brokers describe it to us."""

    name: str
    error: type[kafka_errors.KafkaError] | None
    topic_id: str | None
    partitions: int
    operations: int
    leaders: int = 0

    @property
    def ready(self) -> bool:
        """Exists, and every partition has a leader (a topic just created may not yet)."""
        return self.exists and self.partitions > 0 and self.leaders == self.partitions

    @property
    def exists(self) -> bool:
        return self.error is None and self.topic_id is not None

    @property
    def missing(self) -> bool:
        return self.error is kafka_errors.UnknownTopicOrPartitionError

    def allows(self, operation: str) -> bool:
        """Whether the broker said we may perform `operation` (True if it did not say)."""
        if self.operations == _NOT_ASKED:
            return True
        return bool(self.operations & (1 << OPERATION_CODES[operation]))


def _state(topic: Any) -> TopicState:
    error_code, name, raw_id, _internal, partitions, operations, _tags = topic
    error = None if error_code == 0 else kafka_errors.for_code(error_code)
    topic_id = topic_id_text(raw_id) if raw_id != NO_ID else None
    parts = partitions or ()
    leaders = sum(1 for p in parts if p[0] == 0 and p[2] >= 0)
    return TopicState(str(name), error, topic_id, len(parts), int(operations), leaders)


@dataclass(frozen=True, slots=True)
class Described:
    """The answer to one metadata request: each topic asked for, and the node to send
    administrative requests to (the controller, or in KRaft any broker, which forwards)."""

    topics: dict[str, TopicState]
    controller: int


async def describe_topics(client: Any, names: list[str]) -> Described:
    """Each of `names` as the cluster sees it, asked through `client` (an aiokafka
    `AIOKafkaClient`, already bootstrapped).

    Raises `UnsupportedVersionError` when the broker predates topic ids (Kafka < 2.8), and
    aiokafka's connection errors when no broker answers.
    """
    node = client.get_random_node()
    if node is None:
        raise kafka_errors.KafkaConnectionError("no broker known to ask for topic metadata")
    try:
        response = await client.send(node, TopicMetadataRequest(sorted(set(names))))
    except NotImplementedError as exc:  # aiokafka's "not supported by this broker"
        raise kafka_errors.UnsupportedVersionError(
            "the brokers answer no Metadata request of version 12 (topic ids need Kafka 2.8+)"
        ) from exc
    topics = {state.name: state for state in map(_state, response.topics)}
    controller = response.controller_id if response.controller_id >= 0 else node
    return Described(topics, int(controller))

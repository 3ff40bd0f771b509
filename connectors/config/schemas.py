"""One protobuf type per topic: the schema a connector reads under.

Types come from a FileDescriptorSet file (`PROTO_DESCRIPTOR_SET`, made by
`protoc --include_imports --descriptor_set_out`), so the generic runner needs no generated
code, and/or from imported modules (`PROTO_MODULES`) whose types live in the default pool.
The type name `bytes` binds a topic to raw bytes explicitly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

from connectors.core.errors import PoisonError
from connectors.core.records import TYPE_HEADER, Record


def load_descriptor_set(path: Path) -> descriptor_pool.DescriptorPool:
    """A fresh pool holding every file of the set; raises OSError or ValueError when unreadable."""
    data = path.read_bytes()
    files = descriptor_pb2.FileDescriptorSet()
    try:
        files.ParseFromString(data)
    except DecodeError as exc:
        raise ValueError(f"not a FileDescriptorSet: {exc}") from exc
    if not files.file:
        raise ValueError("the descriptor set holds no files")
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    return pool


def find_message_class(
    name: str, pools: tuple[descriptor_pool.DescriptorPool, ...]
) -> type[Message] | None:
    for pool in pools:
        try:
            descriptor = pool.FindMessageTypeByName(name)
        except KeyError:
            continue
        cls: type[Message] = message_factory.GetMessageClass(descriptor)
        return cls
    return None


@dataclass(frozen=True, slots=True)
class TopicSchema:
    """The type bound to one topic; `message_class` is None for raw bytes."""

    topic: str
    type_name: str
    message_class: type[Message] | None

    def decode(self, record: Record) -> Any:
        """The decoded message, or the raw value for a raw topic; raises PoisonError."""
        if self.message_class is None:
            return record.value
        declared = record.header(TYPE_HEADER)
        if declared is not None:
            self._check_declared(declared, record)
        message = self.message_class()
        if record.value is None:
            return None
        try:
            message.ParseFromString(record.value)
        except DecodeError as exc:
            raise PoisonError(
                "decode", f"value is not a valid {self.type_name}: {exc}", record
            ) from exc
        return message

    def _check_declared(self, declared: bytes, record: Record) -> None:
        text = declared.decode("utf-8", "replace")
        for part in text.split(";"):
            key, _, value = part.strip().partition("=")
            if key.lower() == "messagetype" and value != self.type_name:
                raise PoisonError(
                    "contract",
                    f"record declares type {value!r} but topic {record.topic!r} carries "
                    f"{self.type_name!r} only",
                    record,
                )


class TopicSchemas:
    """Every consumed topic's contract, looked up per record."""

    def __init__(self, schemas: Mapping[str, TopicSchema]) -> None:
        self._by_topic = dict(schemas)

    def __getitem__(self, topic: str) -> TopicSchema:
        return self._by_topic[topic]

    def items(self) -> list[tuple[str, TopicSchema]]:
        return sorted(self._by_topic.items())

    def decode(self, record: Record) -> Any:
        return self._by_topic[record.topic].decode(record)

"""One protobuf type per topic: the schema a connector reads under.

Types come from a FileDescriptorSet file (`PROTO_DESCRIPTOR_SET`, made by
`protoc --include_imports --descriptor_set_out`), so the generic runner needs no generated
code, and/or from imported modules (`PROTO_MODULES`) whose types live in the default pool.
The type name `bytes` binds a topic to raw bytes explicitly.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

from connectors.core.errors import PoisonError
from connectors.core.records import TYPE_HEADER, Record

MAX_DESCRIPTOR_SET_BYTES = 64 * 1024 * 1024


def load_descriptor_set(path: Path) -> descriptor_pool.DescriptorPool:
    """A fresh pool holding every file of the set; raises OSError or ValueError when unreadable."""
    data = read_regular_file(path, MAX_DESCRIPTOR_SET_BYTES)
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


def read_regular_file(path: Path, limit: int) -> bytes:
    """The bytes of `path`, which must be a regular file of at most `limit` bytes.

    Opened without blocking and checked on the open descriptor, so that neither a FIFO
    (whose open and read wait for a writer) nor a device such as /dev/zero (endless) nor a
    file swapped in between the check and the read can hang or exhaust the process."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{path} is not a regular file")
        if info.st_size > limit:
            raise ValueError(f"{path} has {info.st_size} bytes; at most {limit} are read")
        data = file.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path} has more than {limit} bytes; at most {limit} are read")
    return data


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


#: How many distinct `content-type` values a topic remembers the verdict of.
_VERDICTS_KEPT = 64


@dataclass(frozen=True, slots=True)
class TopicSchema:
    """The type bound to one topic; `message_class` is None for raw bytes.

    Decoding runs once per record, so it does no work that the record does not need: a
    record without headers (the usual case) is not scanned for a `content-type`, and the
    verdict on a declared type is parsed once per distinct header value, not per record."""

    topic: str
    type_name: str
    message_class: type[Message] | None
    _verdicts: dict[bytes, str | None] = field(default_factory=dict, compare=False, repr=False)

    def decode(self, record: Record) -> Any:
        """The decoded message, or the raw value for a raw topic; raises PoisonError."""
        cls = self.message_class
        if cls is None:
            return record.value
        if record.headers:
            declared = record.header(TYPE_HEADER)
            if declared is not None:
                self._check_declared(declared, record)
        value = record.value
        if value is None:
            return None
        try:
            # One call into upb instead of two (the constructor, then ParseFromString).
            return cls.FromString(value)
        except DecodeError as exc:
            raise PoisonError(
                "decode", f"value is not a valid {self.type_name}: {exc}", record
            ) from exc

    def _check_declared(self, declared: bytes, record: Record) -> None:
        verdicts = self._verdicts
        try:
            wrong = verdicts[declared]
        except KeyError:
            if len(verdicts) >= _VERDICTS_KEPT:
                verdicts.clear()  # bounded: a producer varying the header costs a parse
            wrong = verdicts[declared] = self._declared_type_if_wrong(declared)
        if wrong is not None:
            raise PoisonError(
                "contract",
                f"record declares type {wrong!r} but topic {record.topic!r} carries "
                f"{self.type_name!r} only",
                record,
            )

    def _declared_type_if_wrong(self, declared: bytes) -> str | None:
        text = declared.decode("utf-8", "replace")
        for part in text.split(";"):
            key, _, value = part.strip().partition("=")
            if key.lower() == "messagetype" and value != self.type_name:
                return value
        return None


class TopicSchemas:
    """Every consumed topic's contract, looked up per record."""

    def __init__(self, schemas: Mapping[str, TopicSchema]) -> None:
        self._by_topic = dict(schemas)

    def __getitem__(self, topic: str) -> TopicSchema:
        return self._by_topic[topic]

    def get(self, topic: str) -> TopicSchema | None:
        return self._by_topic.get(topic)

    def items(self) -> list[tuple[str, TopicSchema]]:
        return sorted(self._by_topic.items())

    def decode(self, record: Record) -> Any:
        return self._by_topic[record.topic].decode(record)

    @property
    def all_raw(self) -> bool:
        """Every topic is raw bytes: nothing to decode, each value is its message."""
        return all(schema.message_class is None for schema in self._by_topic.values())

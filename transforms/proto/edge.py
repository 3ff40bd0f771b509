"""The `edge.v1` types (see `edge.proto`), loaded into the default pool from `edge.binpb`.

The descriptor set is built by `protoc --include_imports --descriptor_set_out` (see
`scripts/build-protos`), so no generated code ties us to one protobuf runtime version.
Importing this module (or naming it in `PROTO_MODULES`) makes the types resolvable by name.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor_pb2 import FileDescriptorSet

DESCRIPTOR_SET = files(__package__).joinpath("edge.binpb")


def _load() -> None:
    pool = descriptor_pool.Default()
    files_ = FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes())
    for file in files_.file:
        try:
            pool.FindFileByName(file.name)
        except KeyError:
            pool.AddSerializedFile(file.SerializeToString())


def message_class(full_name: str) -> Any:
    descriptor = descriptor_pool.Default().FindMessageTypeByName(full_name)
    return message_factory.GetMessageClass(descriptor)


_load()
ZoneSettingsChanged: Any = message_class("edge.v1.ZoneSettingsChanged")
EdgeZoneConfig: Any = message_class("edge.v1.EdgeZoneConfig")

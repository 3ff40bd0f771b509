"""The protobuf types of this connector, from the descriptor set built out of `proto/`.

The runtime decodes records with `PROTO_DESCRIPTOR_SET`, so no generated code is needed and
no protobuf runtime version is pinned by `protoc`. The transform and its tests need the same
types as Python classes: this module loads the descriptor set shipped inside the package
(`make descriptors` writes it) into the default pool and builds the classes from it.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor_pb2 import FileDescriptorSet

DESCRIPTOR_SET = files(__package__).joinpath("schema.binpb")
INPUT_TYPE = "{{ cookiecutter.protobuf_message }}"
{%- if cookiecutter.writer in ("kv", "kafka") %}
OUTPUT_TYPE = "{{ cookiecutter.__proto_package }}.{{ cookiecutter.__view }}"
{%- endif %}


def _load() -> None:
    if not DESCRIPTOR_SET.is_file():
        raise ImportError(
            f"{DESCRIPTOR_SET} is missing: run `make descriptors` (protoc) before installing "
            "or testing this package"
        )
    pool = descriptor_pool.Default()
    for file in FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes()).file:
        try:
            pool.FindFileByName(file.name)
        except KeyError:
            pool.AddSerializedFile(file.SerializeToString())


def message_class(full_name: str) -> Any:
    return message_factory.GetMessageClass(
        descriptor_pool.Default().FindMessageTypeByName(full_name)
    )


_load()
{{ cookiecutter.__message }}: Any = message_class(INPUT_TYPE)
{%- if cookiecutter.writer in ("kv", "kafka") %}
{{ cookiecutter.__view }}: Any = message_class(OUTPUT_TYPE)
{%- endif %}

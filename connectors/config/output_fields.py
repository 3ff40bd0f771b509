"""Output fields a writer routes by, checked against the output's type where it is known.

A writer's settings may name fields of what it writes (`HTTP_URL=.../{value.user_id}`,
`S3_KEY_TEMPLATE=...{value.account_id}...`, `S3_TIME_FIELD`). With no `TRANSFORMS` the
output of each topic is its decoded message, so a field its type lacks would make every
record poison: that is a configuration error, said before anything connects. With
transforms the output's shape is only known per record; a record whose output lacks the
field is poison then (stage `write`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.protobuf.descriptor import FieldDescriptor

from connectors.config.schemas import TopicSchemas
from connectors.core.errors import Problem
from connectors.core.transform import Chain
from connectors.core.writer import WriterPlugin


def check_output_fields(
    plugin: WriterPlugin | None,
    settings: Any,
    chain: Chain,
    schemas: TopicSchemas | None,
    problems: list[Problem],
) -> None:
    """Append a problem per routed field that the output of some topic cannot have (nothing
    to check while the writer, its settings or the topics' types are themselves invalid)."""
    if plugin is None or settings is None or schemas is None:
        return
    if plugin.value_fields is None or chain.steps:
        return
    for variable, paths in plugin.value_fields(settings).items():
        for path in paths:
            for topic, schema in schemas.items():
                cls = schema.message_class
                if cls is None:
                    expected = (
                        f"output fields; with no TRANSFORMS the output of {topic} is its raw "
                        f"bytes, which have no field {path!r}"
                    )
                    problems.append(Problem(variable, expected))
                elif not has_field(cls.DESCRIPTOR, path.split(".")):
                    expected = (
                        f"fields of {cls.DESCRIPTOR.full_name}, the output of {topic} with no "
                        f"TRANSFORMS: it has no field {path!r}"
                    )
                    problems.append(Problem(variable, expected))


def has_field(descriptor: Any, parts: Sequence[str]) -> bool:
    """Whether `a.b.c` names a field of the message (through nested messages; any key of a
    map, which its JSON document holds as an object)."""
    for depth, part in enumerate(parts):
        field = descriptor.fields_by_name.get(part)
        if field is None:
            return False
        if depth == len(parts) - 1:
            return True
        nested = field.message_type
        if _map(field):
            return True
        if nested is None or field.is_repeated:
            return False
        descriptor = nested
    return True


def _map(field: FieldDescriptor) -> bool:
    nested = field.message_type
    return nested is not None and nested.GetOptions().map_entry

"""`connector topics lint --against`: does a catalog change break the topics' readers?

Compared with a previous catalog (and the descriptor set its types came from), a topic
breaks its readers when its type is another message, or when its message (or a message
it contains) changed on the wire: a field removed without reserving its number, a field
renumbered, a field whose type or cardinality changed. Adding fields, renaming a message's
package-less description or reserving a removed number is compatible. These are the wire
rules of `buf breaking` (WIRE), checked on the descriptors alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from connectors.config.catalog.load import Catalog, CatalogProblem

#: A message's descriptor by full name, or None when it is not defined.
Lookup = Callable[[str], Any]


def breaking(
    old: Catalog, new: Catalog, old_types: Lookup, new_types: Lookup
) -> list[CatalogProblem]:
    """One problem per topic (of both catalogs) whose readers the change would break."""
    problems = []
    for spec in new:
        before = old.topics.get(spec.name)
        if before is None:
            continue
        file = new.file_of(spec.name)
        if before.type != spec.type:
            reason = f"{before.type} -> {spec.type}: readers of the topic expect the former type"
            problems.append(CatalogProblem(file, "type", reason))
            continue
        old_message, new_message = old_types(spec.type), new_types(spec.type)
        if old_message is None or new_message is None:
            continue
        for change in message_changes(old_message, new_message, set()):
            problems.append(CatalogProblem(file, "type", f"{spec.type}: {change}"))
    return problems


def message_changes(old: Any, new: Any, seen: set[str]) -> list[str]:
    """How `new` breaks readers of `old` (both message descriptors), nested messages too."""
    if old.full_name in seen:
        return []
    seen.add(old.full_name)
    changes = []
    by_number = {field.number: field for field in new.fields}
    by_name = {field.name: field for field in new.fields}
    reserved = {n for start, end in _reserved(new) for n in range(start, end)}
    for field in old.fields:
        now = by_number.get(field.number)
        where = f"{old.full_name}.{field.name} ({field.number})"
        if now is None:
            moved = by_name.get(field.name)
            if moved is not None:
                changes.append(f"{where} renumbered to {moved.number}")
            elif field.number not in reserved:
                changes.append(f"{where} removed without reserving its number")
            continue
        if _kind(field) != _kind(now):
            changes.append(f"{where} changed type {_kind(field)} -> {_kind(now)}")
        elif field.message_type is not None and now.message_type is not None:
            changes += message_changes(field.message_type, now.message_type, seen)
    return changes


def _kind(field: Any) -> str:
    """A field's wire-relevant type: scalar, message or enum name, and cardinality."""
    if field.message_type is not None:
        name = field.message_type.full_name
    elif field.enum_type is not None:
        name = field.enum_type.full_name
    else:
        name = _SCALARS.get(field.type, str(field.type))
    repeated = getattr(field, "is_repeated", None)
    if repeated is None:
        repeated = field.label == 3
    return f"repeated {name}" if repeated else name


def _reserved(message: Any) -> list[tuple[int, int]]:
    from google.protobuf import descriptor_pb2

    proto = descriptor_pb2.DescriptorProto()
    message.CopyToProto(proto)
    return [(r.start, r.end) for r in proto.reserved_range]


_SCALARS = {
    1: "double", 2: "float", 3: "int64", 4: "uint64", 5: "int32", 6: "fixed64", 7: "fixed32",
    8: "bool", 9: "string", 12: "bytes", 13: "uint32", 15: "sfixed32", 16: "sfixed64",
    17: "sint32", 18: "sint64",
}  # fmt: skip

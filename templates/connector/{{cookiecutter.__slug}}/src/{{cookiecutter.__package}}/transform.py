{%- set stores_view = cookiecutter.writer in ("kv", "kafka") -%}
"""`{{ cookiecutter.transform_name }}`: one {{ cookiecutter.__message }} → {% if cookiecutter.writer == "kv" %}the entry the kv writer stores{% elif cookiecutter.writer == "kafka" %}the record the kafka writer produces{% elif cookiecutter.writer == "http" %}the JSON document the http writer sends{% else %}the JSON line the s3 writer puts in an object{% endif %}.

The stub already behaves like a real connector, so the pipeline works before you change a
line: it keys the output by the event's id, keeps only what {% if stores_view %}readers of the sink need
({{ cookiecutter.__view }}){% else %}the receiver needs, as a JSON document{% endif %}, normalises it so that equal inputs give equal
bytes, {% if stores_view %}deletes the entry when the event says the thing is gone{% else %}says `"deleted": true` when the event says the thing is gone (the receiver
decides what that means){% endif %}, and drops events it cannot key. Replace the body with your
logic; keep the rules of the transform contract:

- never mutate `message` (the runtime may hand the same object to the next transform);
- return None to drop a record, `Put(key, value)` to write{% if stores_view %}, `Delete(key)` to remove{% endif %}, or a
  list of those to fan out; a value may be a protobuf message, bytes, str or a JSON-able dict;
- raise `RetriableError` for a dependency that is down (the record is retried, not
  dead-lettered); raise anything else only for a record that can never be processed: it is
  treated as poison.
"""

from __future__ import annotations

from typing import Any

from connectors import {% if stores_view %}Delete, {% endif %}Put, TransformContext, transform
{%- if stores_view %}

from {{ cookiecutter.__package }}.schema import {{ cookiecutter.__view }}
{%- endif %}

KEY_PREFIX = "{{ cookiecutter.__key_prefix }}"


def entry_key(entity_id: str) -> str:
    """The {% if stores_view %}sink key{% else %}output's key{% endif %} of one entity; stable, so a replay {% if cookiecutter.writer == "kv" %}overwrites instead of duplicating{% else %}carries the same key{% endif %}."""
    return f"{KEY_PREFIX}:{entity_id}"


@transform("{{ cookiecutter.transform_name }}")
def {{ cookiecutter.transform_name }}(message: Any, ctx: TransformContext) -> {% if stores_view %}Put | Delete | None{% else %}Put | None{% endif %}:
    entity_id = message.id.strip()
    if not entity_id:
        ctx.logger.warning(
            "{{ cookiecutter.__message }} without id dropped: %s[%d]@%d", ctx.topic, ctx.partition, ctx.offset
        )
        return None
{%- if stores_view %}
    if message.deleted:
        return Delete(entry_key(entity_id))
    view = {{ cookiecutter.__view }}(
        id=entity_id,
        name=message.name.strip(),
        attributes=_attributes(message),
        tags=_tags(message),
        version=message.version,
        updated_at_ms=message.updated_at_ms,
    )
    return Put(entry_key(entity_id), view)
{%- else %}
    document: dict[str, Any] = {
        "id": entity_id,
        "name": message.name.strip(),
        "attributes": _attributes(message),
        "tags": _tags(message),
        "version": message.version,
        "updated_at_ms": message.updated_at_ms,
        "deleted": message.deleted,
    }
    if message.HasField("occurred_at"):
        document["occurred_at"] = message.occurred_at.ToJsonString()
    return Put(entry_key(entity_id), document)
{%- endif %}


def _attributes(message: Any) -> dict[str, str]:
    """Keys lowercased; empty keys and values dropped."""
    return {
        name.strip().lower(): value.strip()
        for name, value in message.attributes.items()
        if name.strip() and value.strip()
    }


def _tags(message: Any) -> list[str]:
    """Lowercased, sorted, de-duplicated."""
    return sorted({tag.strip().lower() for tag in message.tags if tag.strip()})

"""`{{ cookiecutter.transform_name }}`: one {{ cookiecutter.__message }} → the entry the {{ cookiecutter.writer }} writer stores.

The stub already behaves like a real connector, so the pipeline works before you change a
line: it keys the output by the event's id, keeps only what readers of the sink need
({{ cookiecutter.__view }}), normalises it so that equal inputs give equal bytes, deletes the
entry when the event says the thing is gone, and drops events it cannot key. Replace the
body with your logic; keep the rules of the transform contract:

- never mutate `message` (the runtime may hand the same object to the next transform);
- return None to drop a record, `Put(key, value)` to write, `Delete(key)` to remove, or a
  list of those to fan out;
- raise only for a record that can never be processed: it is treated as poison.
"""

from __future__ import annotations

from typing import Any

from connectors import Delete, Put, TransformContext, transform

from {{ cookiecutter.__package }}.schema import {{ cookiecutter.__view }}

KEY_PREFIX = "{{ cookiecutter.__key_prefix }}"


def entry_key(entity_id: str) -> str:
    """The sink key of one entity; stable, so a replay overwrites instead of duplicating."""
    return f"{KEY_PREFIX}:{entity_id}"


@transform("{{ cookiecutter.transform_name }}")
def {{ cookiecutter.transform_name }}(message: Any, ctx: TransformContext) -> Put | Delete | None:
    entity_id = message.id.strip()
    if not entity_id:
        ctx.logger.warning(
            "{{ cookiecutter.__message }} without id dropped: %s[%d]@%d", ctx.topic, ctx.partition, ctx.offset
        )
        return None
    if message.deleted:
        return Delete(entry_key(entity_id))
    view = {{ cookiecutter.__view }}(
        id=entity_id,
        name=message.name.strip(),
        attributes={
            name.strip().lower(): value.strip()
            for name, value in message.attributes.items()
            if name.strip() and value.strip()
        },
        tags=sorted({tag.strip().lower() for tag in message.tags if tag.strip()}),
        version=message.version,
        updated_at_ms=message.updated_at_ms,
    )
    return Put(entry_key(entity_id), view)

"""The HTTP writer (`WRITER=http`): POST transform outputs as JSON to a service.

One request per partition of each batch (`HTTP_BATCH=true`, a JSON array or NDJSON) or one
per record, each with an idempotency key derived from the offsets it carries; see
`sender` for how answers are classified and `settings` for the variables.
"""

from __future__ import annotations

from connectors import Writer, WriterContext, WriterPlugin
from writers.http.settings import HTTPSettings


def build(settings: HTTPSettings, context: WriterContext) -> Writer:
    from writers.http.sender import HttpWriter

    return HttpWriter(settings, context)


def value_fields(settings: HTTPSettings) -> dict[str, list[str]]:
    """The output fields `HTTP_URL` routes by (`{value.user_id}` -> `user_id`)."""
    from writers.http.routing import parse

    return {"HTTP_URL": [".".join(path) for path in parse(settings.url).value_fields]}


PLUGIN = WriterPlugin(name="http", settings=HTTPSettings, build=build, value_fields=value_fields)

__all__ = ["PLUGIN", "HTTPSettings", "build"]

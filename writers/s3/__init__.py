"""The S3 / Cloudflare R2 writer (`WRITER=s3`, alias `r2`): Kafka records as objects.

Objects are named by a key template (`template`: `S3_KEY_TEMPLATE`, or the default layout
of `naming`) holding the offsets they hold, routed by partition, event date and output
fields (`routing`), encoded as NDJSON or length-delimited protobuf and gzipped by default
(`formats`), cut under `S3_OBJECT_MAX_BYTES` as uploaded (`split`), and uploaded through
`client` with per-object partial success (`upload`); a replay after a crash skips what a
lost write already stored (`replay`). The runner's flush policy (`S3_OBJECT_MAX_BYTES`,
`S3_FLUSH_INTERVAL_S`) puts several Kafka batches into one write, and their offsets are
committed only after it.
"""

from __future__ import annotations

from connectors import Writer, WriterContext, WriterPlugin
from writers.s3.settings import S3Settings


def build(settings: S3Settings, context: WriterContext) -> Writer:
    from writers.s3.upload import S3Writer

    return S3Writer(settings, context)


def value_fields(settings: S3Settings) -> dict[str, list[str]]:
    """The output fields the key template routes by, and the event-time field."""
    fields: dict[str, list[str]] = {"S3_KEY_TEMPLATE": settings.template.value_fields}
    if settings.time_field:
        fields["S3_TIME_FIELD"] = [settings.time_field]
    return fields


PLUGIN = WriterPlugin(name="s3", settings=S3Settings, build=build, value_fields=value_fields)

__all__ = ["PLUGIN", "S3Settings", "build"]

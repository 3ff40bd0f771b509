"""The S3 / Cloudflare R2 writer (`WRITER=s3`, alias `r2`): Kafka records as objects.

Objects are named by the offsets they hold (see `naming`), encoded as NDJSON or
length-delimited protobuf and gzipped by default (see `formats`), and sized by the runner's
flush policy (`S3_OBJECT_MAX_BYTES`, `S3_FLUSH_INTERVAL_S`): several Kafka batches go into
one upload, and their offsets are committed only after it.
"""

from __future__ import annotations

from connectors import Writer, WriterContext, WriterPlugin
from writers.s3.settings import S3Settings


def build(settings: S3Settings, context: WriterContext) -> Writer:
    from writers.s3.upload import S3Writer

    return S3Writer(settings, context)


PLUGIN = WriterPlugin(name="s3", settings=S3Settings, build=build)

__all__ = ["PLUGIN", "S3Settings", "build"]

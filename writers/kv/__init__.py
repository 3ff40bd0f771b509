"""The Quicksilver-like key-value writer (`WRITER=kv`, alias `quicksilver`).

Upsert by key, delete on a `Delete` output or a tombstone, one transaction (LMDB) or one
MULTI/EXEC pipeline (Redis) per batch, and source positions kept with the data (per
partition in LMDB, per key in Redis) so that replays are harmless: positions name a topic
by its id as well when the reader knows it (a re-created topic starts afresh), and a
dead letter sent back by `connector dlq replay` is ordered by where it was first read.
The backend is chosen by `KV_URL`'s scheme.
"""

from __future__ import annotations

from connectors import KeyValueView, Writer, WriterContext, WriterPlugin
from writers.kv.settings import KVSettings


def build(settings: KVSettings, context: WriterContext) -> Writer:
    if settings.scheme == "lmdb":
        from writers.kv.lmdb_store import LmdbStore

        return LmdbStore(settings, context.connector_name)
    from writers.kv.redis_store import RedisStore

    return RedisStore(settings)


def open_view(settings: KVSettings) -> KeyValueView:
    if settings.scheme == "lmdb":
        from writers.kv.lmdb_store import LmdbView

        return LmdbView(settings)
    from writers.kv.redis_store import RedisView

    return RedisView(settings)


PLUGIN = WriterPlugin(name="kv", settings=KVSettings, build=build, open_view=open_view)

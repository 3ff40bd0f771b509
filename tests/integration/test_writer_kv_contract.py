"""The shared writer contract (`connectors.testing.conformance`) against the KV writer's two real
backends: an LMDB environment on disk and a Redis server started by the harness."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest

from connectors import (
    Batch,
    Entry,
    FatalError,
    Record,
    RetriableError,
    WriteBatch,
    Writer,
    WriterContext,
)
from connectors.testing.conformance import Delivered, Target, WriterContract, make_batch
from harness.ports import free_port
from harness.redis import RedisServer
from writers.kv import PLUGIN
from writers.kv.settings import KVSettings

pytestmark = pytest.mark.integration

CONTEXT = WriterContext(connector_name="kv-contract")


class KVTarget:
    def __init__(self, settings: KVSettings) -> None:
        self.settings = settings

    def writer(self) -> Writer:
        writer: Writer = PLUGIN.build(self.settings, CONTEXT)
        return writer

    async def read(self) -> Sequence[Delivered]:
        view = PLUGIN.open_view(self.settings)
        try:
            return [Delivered(key.hex(), key, value) for key, value in view.items()]
        finally:
            view.close()


class TestLmdbContract(WriterContract):
    failures = {"map_full": FatalError}
    partial_success = False  # one transaction per batch: all or nothing

    @pytest.fixture(autouse=True)
    def _root(self, tmp_path: Path) -> None:
        self.root = tmp_path

    async def new_target(self) -> Target:
        path = self.root / uuid.uuid4().hex
        return KVTarget(KVSettings(url=f"lmdb:{path}", sync=False))

    async def failing_write(self, scenario: str) -> tuple[Writer, WriteBatch | None]:
        settings = KVSettings(url=f"lmdb:{self.root / 'full'}", map_size_mb=1, sync=False)
        huge = make_batch(self.topic, [(0, 0, b"big", b"x" * (2 * 1024 * 1024))])
        return KVTarget(settings).writer(), huge


class TestRedisContract(WriterContract):
    failures = {"unreachable": RetriableError}
    partial_success = False  # one transaction per batch: all or nothing

    @pytest.fixture(autouse=True)
    def _server(self, redis_server: RedisServer) -> None:
        self.url = redis_server.url

    async def new_target(self) -> Target:
        return KVTarget(KVSettings(url=self.url, key_prefix=f"c-{uuid.uuid4().hex[:12]}:"))

    async def failing_write(self, scenario: str) -> tuple[Writer, WriteBatch | None]:
        nobody = f"redis://127.0.0.1:{free_port()}/0"
        return KVTarget(KVSettings(url=nobody)).writer(), None


# ----------------------------------------------------------------- Redis: hostile input


def redis_settings(url: str) -> KVSettings:
    return KVSettings(url=url, key_prefix=f"h-{uuid.uuid4().hex[:12]}:")


async def stored(settings: KVSettings) -> dict[bytes, bytes]:
    return {d.key: d.value for d in await KVTarget(settings).read() if d.key and d.value}


def replayed(offset: int, key: bytes, value: bytes, first_at: int) -> WriteBatch:
    headers = (
        ("dlq.original.topic", b"t"),
        ("dlq.original.partition", b"0"),
        ("dlq.original.offset", str(first_at).encode()),
    )
    record = Record("t", 0, offset, key, value, headers)
    return WriteBatch(Batch((record,)), (Entry(record, key, value),))


async def test_redis_orders_a_replayed_dead_letter_by_its_first_position(
    redis_server: RedisServer,
) -> None:
    settings = redis_settings(redis_server.url)
    writer = KVTarget(settings).writer()
    await writer.start()
    await writer.write(make_batch("t", [(0, 1, b"K", b"v2-new"), (0, 2, b"L", b"l2")]))
    await writer.write(replayed(3, b"K", b"v1-old", first_at=0))  # older: skipped
    await writer.write(replayed(4, b"M", b"m1", first_at=0))  # nothing newer: applied
    await writer.close()
    assert await stored(settings) == {b"K": b"v2-new", b"L": b"l2", b"M": b"m1"}


async def test_redis_keeps_a_recreated_topic_apart_from_the_old_one(
    redis_server: RedisServer,
) -> None:
    settings = redis_settings(redis_server.url)
    writer = KVTarget(settings).writer()
    await writer.start()
    old = make_batch("t", [(0, 50, b"K", b"old")])
    await writer.write(WriteBatch(Batch(old.batch.records, {"t": "id-1"}), old.entries))
    new = make_batch("t", [(0, 0, b"K", b"new")])
    await writer.write(WriteBatch(Batch(new.batch.records, {"t": "id-2"}), new.entries))
    await writer.close()
    assert await stored(settings) == {b"K": b"new"}


async def test_redis_takes_keys_longer_than_lmdb_allows(redis_server: RedisServer) -> None:
    settings = redis_settings(redis_server.url)
    writer = KVTarget(settings).writer()
    await writer.start()
    await writer.write(make_batch("t", [(0, 0, b"k" * 4096, b"v")]))
    await writer.close()
    assert await stored(settings) == {b"k" * 4096: b"v"}


async def test_redis_orders_a_replay_sent_to_another_topic_by_its_first_topic(
    redis_server: RedisServer,
) -> None:
    settings = redis_settings(redis_server.url)
    first = KVTarget(settings).writer()
    await first.start()
    newer = make_batch("t", [(0, 1, b"K", b"v2-new")])
    await first.write(WriteBatch(Batch(newer.batch.records, {"t": "id-t"}), newer.entries))
    await first.close()
    # Another process, whose batch names only t.retry: t's id is not known to it.
    second = KVTarget(settings).writer()
    await second.start()
    late = replayed(0, b"K", b"v1-old", first_at=0)
    moved = late.batch.records[0]._replace(topic="t.retry")
    await second.write(
        WriteBatch(Batch((moved,), {"t.retry": "id-r"}), (Entry(moved, b"K", b"v1-old"),))
    )
    await second.close()
    assert await stored(settings) == {b"K": b"v2-new"}

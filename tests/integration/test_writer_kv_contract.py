"""The shared writer contract (`connectors.testing.conformance`) against the KV writer's two real
backends: an LMDB environment on disk and a Redis server started by the harness."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest

from connectors import FatalError, RetriableError, WriteBatch, Writer, WriterContext
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

    @pytest.fixture(autouse=True)
    def _server(self, redis_server: RedisServer) -> None:
        self.url = redis_server.url

    async def new_target(self) -> Target:
        return KVTarget(KVSettings(url=self.url, key_prefix=f"c-{uuid.uuid4().hex[:12]}:"))

    async def failing_write(self, scenario: str) -> tuple[Writer, WriteBatch | None]:
        nobody = f"redis://127.0.0.1:{free_port()}/0"
        return KVTarget(KVSettings(url=nobody)).writer(), None

"""Per-object partial success of the S3 writer, and replays, on an in-memory bucket.

The writer talks to the bucket only through `ObjectClient`; here a wrapper of the obstore
client over an in-memory store fails chosen uploads, as a bucket whose one path is refused
for a while (a 503 SlowDown on a hot prefix, a network cut in the middle of a write).
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Mapping

import obstore
import pytest
from obstore.store import MemoryStore

from connectors import Batch, Entry, Record, RetriableError, WriteBatch, WriterContext
from connectors.config.settings import load
from connectors.core.errors import Problem
from connectors.runtime.runner import Runner
from connectors.testing.fakes import MemoryDeadLetters, MemoryReader
from tests.unit.test_runner import pipeline
from writers.s3 import replay
from writers.s3.client import ObstoreClient
from writers.s3.settings import S3Settings
from writers.s3.upload import OBJECTS, S3Writer

TEMPLATE = (
    "acct={value.account}/{year}{month}{day}/{topic}-{partition}-{first_offset}-{last_offset}"
)
DAY_MS = 86_400_000


class FailingClient(ObstoreClient):
    """Uploads to memory, but refuses keys containing `refuse` while `failures` last."""

    def __init__(self, store: MemoryStore, refuse: str = "", failures: int = 0) -> None:
        super().__init__(store, "logs", "", 8 * 1024 * 1024)
        self.refuse = refuse
        self.failures = failures
        self.puts: list[str] = []
        self.lists = 0

    async def keys_after(self, folder: str, start_after: str) -> list[str]:
        self.lists += 1
        return await super().keys_after(folder, start_after)

    async def put(self, key: str, body: bytes, headers: Mapping[str, str]) -> None:
        self.puts.append(key)
        if self.refuse and self.refuse in key and self.failures > 0:
            self.failures -= 1
            raise RetriableError(f"S3 request for {key} failed: 503 SlowDown")
        await super().put(key, body, headers)


def s3_settings(**env: str) -> S3Settings:
    problems: list[Problem] = []
    loaded = load(S3Settings, {"S3_BUCKET": "logs", "S3_KEY_TEMPLATE": TEMPLATE, **env}, problems)
    assert loaded is not None, problems
    return loaded


def events(start: int, count: int, accounts: int = 3, partition: int = 0) -> list[Record]:
    rows = []
    for offset in range(start, start + count):
        doc = {"account": f"a{offset % accounts}", "n": offset, "pad": "p" * (offset % 50)}
        value = json.dumps(doc).encode()
        rows.append(Record("raw", partition, offset, b"k", value, (), offset * DAY_MS // 7))
    return rows


def batch_of(records: list[Record]) -> WriteBatch:
    return WriteBatch(Batch(tuple(records)), tuple(Entry(r, r.key, r.value) for r in records))


def stored_events(store: MemoryStore) -> dict[str, list[dict[str, object]]]:
    found = {}
    for meta in obstore.list(store).collect():
        body = bytes(obstore.get(store, meta["path"]).bytes())
        body = gzip.decompress(body) if meta["path"].endswith(".gz") else body
        found[meta["path"]] = [json.loads(line) for line in body.splitlines()]
    return found


def check_each_event_once(store: MemoryStore, count: int) -> None:
    found = stored_events(store)
    numbers = sorted(d["n"] for docs in found.values() for d in docs)  # type: ignore[type-var]
    assert numbers == list(range(count))
    for key, docs in found.items():
        assert {f"acct={d['account']}/" for d in docs} == {key.split("/")[0] + "/"}, key


async def test_a_failed_object_is_the_only_one_uploaded_again() -> None:
    store = MemoryStore()
    client = FailingClient(store, refuse="acct=a1/", failures=1000)
    writer = S3Writer(s3_settings(), WriterContext("unit"), client)
    write = batch_of(events(0, 30))
    with pytest.raises(RetriableError) as failed:
        await writer.write(write)
    refused = [k for k in client.puts if "acct=a1/" in k]
    assert refused and len(client.puts) > len(refused)
    stored = failed.value.stored
    assert stored == {i for i, e in enumerate(write.entries) if e.source.offset % 3 != 1}

    rest = WriteBatch(write.batch, tuple(e for i, e in enumerate(write.entries) if i not in stored))
    client.puts.clear()
    client.failures = 0
    listed = client.lists
    await writer.write(rest)
    assert client.puts == refused, "the retry uploads only the refused objects, same names"
    assert client.lists == listed, "a retry of the same write lists nothing again"
    check_each_event_once(store, 30)


async def test_through_the_runner_a_retry_uploads_only_the_rest() -> None:
    store = MemoryStore()
    client = FailingClient(store, refuse="acct=a2/", failures=3)
    writer = S3Writer(s3_settings(), WriterContext("unit"), client)
    reader = MemoryReader([events(0, 60)])
    runner = Runner(pipeline(), until_caught_up=True, reader=reader, writer=writer,
                    dead_letters=MemoryDeadLetters())  # fmt: skip
    before = OBJECTS.labels("unit", "s3", "raw")._value.get()
    await asyncio.wait_for(runner.run(), 10)
    check_each_event_once(store, 60)
    uploaded = [k for k in client.puts if "acct=a2/" not in k]
    assert len(uploaded) == len(set(uploaded)), "an object of another path was sent twice"
    assert reader.commits == [{("raw", 0): 60}]
    assert OBJECTS.labels("unit", "s3", "raw")._value.get() - before == len(stored_events(store))


async def test_a_record_without_its_path_field_is_dead_lettered_and_the_rest_stored() -> None:
    store = MemoryStore()
    client = FailingClient(store)
    writer = S3Writer(s3_settings(S3_TIME_FIELD="at"), WriterContext("unit"), client)
    good = [
        {"account": "a1", "at": "2026-11-30T10:00:00Z", "n": 0},
        {"account": "a1", "at": 1796083200, "n": 3},
    ]
    bad = [{"at": "2026-11-30T10:00:00Z"}, {"account": "a1", "at": "tomorrow"}]
    docs = [good[0], bad[0], bad[1], good[1]]
    records = [Record("raw", 0, o, b"k", json.dumps(d).encode()) for o, d in enumerate(docs)]
    letters = MemoryDeadLetters()
    reader = MemoryReader([records])
    runner = Runner(
        pipeline(), until_caught_up=True, reader=reader, writer=writer, dead_letters=letters
    )
    await asyncio.wait_for(runner.run(), 10)
    assert [(d.record.offset, d.stage) for d in letters.letters] == [(1, "write"), (2, "write")]
    assert "no field 'account'" in letters.letters[0].message
    assert "not an event time" in letters.letters[1].message
    assert list(stored_events(store)) == [
        "acct=a1/20261130/raw-0-00000000000000000000-00000000000000000000.ndjson.gz",
        "acct=a1/20261201/raw-0-00000000000000000003-00000000000000000003.ndjson.gz",
    ]
    assert reader.commits == [{("raw", 0): 4}]


@pytest.mark.parametrize("kept", [100_000, 1])
async def test_objects_are_split_under_the_cap_and_a_crash_replay_duplicates_nothing(
    kept: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run uploads some of a write's objects (the later pieces of a path included) and
    dies; the next run replays from the committed offset with other batch boundaries. With
    `kept=1` the guard forgets every path but the last and lists them again."""
    monkeypatch.setattr(replay, "ROUTES_KEPT", kept)
    store = MemoryStore()
    cap = {"S3_OBJECT_MAX_BYTES": "1024", "S3_COMPRESSION": "none"}
    crashed = FailingClient(store, refuse="-00000000000000000000-", failures=1)
    first = S3Writer(s3_settings(**cap), WriterContext("unit"), crashed)
    with pytest.raises(RetriableError):
        await first.write(batch_of(events(0, 200, accounts=2)))
    assert len(stored_events(store)) > 1
    restarted = S3Writer(s3_settings(**cap), WriterContext("unit"), FailingClient(store))
    for start, count in ((0, 70), (70, 90), (160, 140)):
        await restarted.write(batch_of(events(start, count, accounts=2)))
    check_each_event_once(store, 300)
    for meta in obstore.list(store).collect():
        assert meta["size"] <= 1024 or len(stored_events(store)[meta["path"]]) == 1


async def test_headers_say_ndjson_and_gzip() -> None:
    store = MemoryStore()
    writer = S3Writer(s3_settings(), WriterContext("unit"), FailingClient(store))
    await writer.write(batch_of(events(0, 1)))
    (meta,) = obstore.list(store).collect()
    attributes = obstore.get(store, meta["path"]).attributes
    assert attributes["Content-Type"] == "application/x-ndjson"
    assert attributes["Content-Encoding"] == "gzip"


async def test_the_default_layout_is_unchanged_and_dated_by_the_time_field() -> None:
    store = MemoryStore()
    problems: list[Problem] = []
    env = {"S3_BUCKET": "logs", "S3_PREFIX": "p", "S3_PARTITION_BY": "date"}
    dated = load(S3Settings, {**env, "S3_TIME_FIELD": "at"}, problems)
    plain = load(S3Settings, {"S3_BUCKET": "logs", "S3_PREFIX": "p"}, problems)
    assert dated is not None and plain is not None, problems
    docs = [{"at": "2026-11-30T23:59:59Z"}, {"at": "2026-12-01T00:00:00+00:00"}]
    records = [Record("raw", 4, o, b"k", json.dumps(d).encode(), (), 0) for o, d in enumerate(docs)]
    await S3Writer(dated, WriterContext("unit"), FailingClient(store)).write(batch_of(records))
    await S3Writer(plain, WriterContext("unit"), FailingClient(store)).write(batch_of(records))
    assert sorted(stored_events(store)) == [
        "p/raw/4/00000000000000000000-00000000000000000001.ndjson.gz",
        "p/raw/dt=2026-11-30/4/00000000000000000000-00000000000000000000.ndjson.gz",
        "p/raw/dt=2026-12-01/4/00000000000000000001-00000000000000000001.ndjson.gz",
    ]

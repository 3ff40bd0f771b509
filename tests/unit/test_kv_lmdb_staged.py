"""The LMDB store's staged writes: puts first, the commit on the writer's thread after.

The runner awaits the commit before it commits offsets (tests/unit/test_runner_staged.py);
here, what the store itself promises: the commit's awaitable ends when the batch is in the
store, a poison record stops `stage` with nothing begun (the write lock released), and
closing the store waits for a commit still running.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from connectors import Batch, Entry, PoisonError, Record, WriteBatch
from connectors.core.writer import stager
from tests.unit.test_kv_lmdb import view_at
from writers.kv.lmdb_store import LmdbStore
from writers.kv.settings import KVSettings


def entry(offset: int, key: bytes, value: bytes | None) -> Entry:
    return Entry(Record("t", 0, offset, key, value), key, value)


def batch(*entries: Entry) -> WriteBatch:
    return WriteBatch(Batch(tuple(e.source for e in entries)), entries)


async def store_at(path: Path) -> LmdbStore:
    store = LmdbStore(KVSettings(url=f"lmdb:{path}", sync=True), "c")  # type: ignore[call-arg]
    await store.start()
    return store


async def test_the_store_stages_and_its_commit_ends_with_the_batch_stored(tmp_path: Path) -> None:
    store = await store_at(tmp_path)
    assert stager(store) is store
    durable = await store.stage(batch(entry(0, b"a", b"1"), entry(1, b"b", b"2")))
    await asyncio.wait_for(durable, timeout=10)
    # The position moved with it: a replay of those offsets is skipped.
    await asyncio.wait_for(await store.stage(batch(entry(0, b"a", b"old"))), timeout=10)
    await store.close()
    assert view_at(tmp_path) == {b"a": b"1", b"b": b"2"}


async def test_a_poison_record_stops_stage_with_nothing_begun(tmp_path: Path) -> None:
    store = await store_at(tmp_path)
    long = entry(1, b"k" * 512, b"v")
    full = batch(entry(0, b"a", b"1"), long, entry(2, b"b", b"2"))
    with pytest.raises(PoisonError) as caught:
        await store.stage(full)
    assert caught.value.record == long.source
    # The write transaction was aborted on the writer's thread: the next one begins there.
    rest = WriteBatch(full.batch, (full.entries[0], full.entries[2]))
    await asyncio.wait_for(await store.stage(rest), timeout=10)
    await store.close()
    assert view_at(tmp_path) == {b"a": b"1", b"b": b"2"}


async def test_a_batch_that_changes_nothing_is_done_at_once(tmp_path: Path) -> None:
    store = await store_at(tmp_path)
    # No entries, and no key the replay guard would remember: nothing to write at all.
    keyless = Record("t", 0, 0, None, b"x")
    durable = await store.stage(WriteBatch(Batch((keyless,)), ()))
    assert isinstance(durable, asyncio.Future) and durable.done()
    await store.close()


async def test_close_waits_for_a_commit_still_running(tmp_path: Path) -> None:
    store = await store_at(tmp_path)
    entries = tuple(entry(o, b"k%06d" % o, b"v" * 100) for o in range(20_000))
    durable = await store.stage(batch(*entries))
    await store.close()  # not awaiting `durable` first: an abandoned batch at shutdown
    assert durable.done() if isinstance(durable, asyncio.Future) else True
    assert len(view_at(tmp_path)) == 20_000


async def test_a_closed_store_starts_and_writes_again(tmp_path: Path) -> None:
    store = await store_at(tmp_path)
    await store.write(batch(entry(0, b"a", b"1")))
    await store.close()
    await store.start()
    await asyncio.wait_for(await store.stage(batch(entry(1, b"b", b"2"))), timeout=10)
    await store.close()
    assert view_at(tmp_path) == {b"a": b"1", b"b": b"2"}

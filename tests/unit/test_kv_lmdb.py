"""The LMDB backend: upserts, deletes, and replays that never undo newer data."""

from __future__ import annotations

from pathlib import Path

from connectors import Batch, Entry, Record, WriteBatch
from writers.kv.lmdb_store import LmdbStore, LmdbView
from writers.kv.settings import KVSettings


def entry(partition: int, offset: int, key: bytes, value: bytes | None) -> Entry:
    return Entry(Record("t", partition, offset, key, value), key, value)


def batch(*entries: Entry) -> WriteBatch:
    return WriteBatch(Batch(tuple(e.source for e in entries)), entries)


async def store_at(path: Path, **extra: str) -> LmdbStore:
    store = LmdbStore(KVSettings(url=f"lmdb:{path}", sync=False, **extra))  # type: ignore[arg-type]
    await store.start()
    return store


def view_at(path: Path, **extra: str) -> dict[bytes, bytes]:
    view = LmdbView(KVSettings(url=f"lmdb:{path}", **extra))  # type: ignore[arg-type]
    try:
        return dict(view.items())
    finally:
        view.close()


async def test_upsert_delete_and_replay_of_older_offsets(tmp_path: Path) -> None:
    store = await store_at(tmp_path)
    await store.write(batch(entry(0, 1, b"a", b"a1"), entry(0, 2, b"b", b"b2")))
    await store.write(batch(entry(0, 3, b"a", b"a3"), entry(0, 4, b"b", None)))
    # A replay of the first batch (a crash before its commit) must not undo offsets 3 and 4.
    await store.write(batch(entry(0, 1, b"a", b"a1"), entry(0, 2, b"b", b"b2")))
    await store.close()
    assert view_at(tmp_path) == {b"a": b"a3"}


async def test_same_key_in_one_batch_keeps_the_last(tmp_path: Path) -> None:
    store = await store_at(tmp_path)
    await store.write(batch(entry(1, 5, b"k", b"old"), entry(1, 6, b"k", b"new")))
    await store.close()
    assert view_at(tmp_path) == {b"k": b"new"}


async def test_other_partitions_are_not_ordered_against_each_other(tmp_path: Path) -> None:
    store = await store_at(tmp_path)
    await store.write(batch(entry(0, 100, b"k", b"p0")))
    await store.write(batch(entry(1, 3, b"k", b"p1")))
    await store.close()
    assert view_at(tmp_path) == {b"k": b"p1"}


async def test_key_prefix_isolates_connectors_sharing_a_store(tmp_path: Path) -> None:
    one = await store_at(tmp_path, key_prefix="one/")
    await one.write(batch(entry(0, 0, b"k", b"1")))
    await one.close()
    two = await store_at(tmp_path, key_prefix="two/")
    await two.write(batch(entry(0, 0, b"k", b"2")))
    await two.close()
    assert view_at(tmp_path, key_prefix="one/") == {b"k": b"1"}
    assert view_at(tmp_path, key_prefix="two/") == {b"k": b"2"}
    assert view_at(tmp_path) == {b"one/k": b"1", b"two/k": b"2"}


async def test_entry_without_key_is_poison_not_a_silent_drop(tmp_path: Path) -> None:
    import pytest

    from connectors import PoisonError

    store = await store_at(tmp_path)
    keyless = Entry(Record("t", 0, 9, None, b"v"), None, b"v")
    with pytest.raises(PoisonError) as caught:
        await store.write(batch(entry(0, 8, b"a", b"1"), keyless))
    assert caught.value.record == keyless.source
    await store.close()
    assert view_at(tmp_path) == {}

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


async def store_at(path: Path, connector: str = "c", **extra: str) -> LmdbStore:
    settings = KVSettings(url=f"lmdb:{path}", sync=False, **extra)  # type: ignore[arg-type]
    store = LmdbStore(settings, connector)
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


async def test_a_batch_straddling_the_stored_position_applies_only_what_is_newer(
    tmp_path: Path,
) -> None:
    store = await store_at(tmp_path)
    await store.write(batch(entry(0, 3, b"a", b"a3"), entry(0, 4, b"b", b"b4")))
    # Redelivered from offset 2 after a crash: 2-4 are in the store, 5 is new.
    await store.write(
        batch(
            entry(0, 2, b"b", b"b2"),
            entry(0, 3, b"a", b"a3"),
            entry(0, 4, b"b", b"b4"),
            entry(0, 5, b"c", b"c5"),
        )
    )
    await store.write(batch(entry(0, 1, b"a", b"a1")))
    await store.close()
    assert view_at(tmp_path) == {b"a": b"a3", b"b": b"b4", b"c": b"c5"}


async def test_records_without_entries_still_move_the_position(tmp_path: Path) -> None:
    store = await store_at(tmp_path)
    dropped = Record("t", 0, 7, b"x", b"dropped by the transform")
    await store.write(
        WriteBatch(Batch((Record("t", 0, 6, b"a", b"a6"), dropped)), (entry(0, 6, b"a", b"a6"),))
    )
    # Offset 7 produced nothing but is in the store's past: its replay must not write.
    await store.write(batch(entry(0, 7, b"a", b"stale")))
    await store.close()
    assert view_at(tmp_path) == {b"a": b"a6"}


async def test_positions_belong_to_one_connector(tmp_path: Path) -> None:
    # Two connectors (two consumer groups) read the same topic into one store: each keeps
    # its own positions, so neither skips the other's records as replays.
    audit = await store_at(tmp_path, connector="audit")
    await audit.write(batch(entry(0, 10, b"audit:k", b"1")))
    await audit.close()
    edge = await store_at(tmp_path, connector="edge")
    await edge.write(batch(entry(0, 5, b"edge:k", b"2")))
    await edge.close()
    assert view_at(tmp_path) == {b"audit:k": b"1", b"edge:k": b"2"}


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

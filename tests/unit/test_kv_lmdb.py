"""The LMDB backend: upserts, deletes, and replays that never undo newer data."""

from __future__ import annotations

from pathlib import Path

from connectors import Batch, Entry, Problem, Record, WriteBatch
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


# ----------------------------------------------------------------- keys LMDB cannot hold


async def test_a_key_over_lmdbs_limit_is_poison_and_nothing_of_the_batch_is_written(
    tmp_path: Path,
) -> None:
    import pytest

    from connectors import PoisonError

    store = await store_at(tmp_path)
    long = entry(0, 1, b"k" * 512, b"v")
    full = batch(entry(0, 0, b"a", b"1"), long, entry(0, 2, b"b", b"2"))
    with pytest.raises(PoisonError) as caught:
        await store.write(full)
    assert caught.value.record == long.source
    assert "512 bytes" in str(caught.value) and "511" in str(caught.value)
    await store.close()
    assert view_at(tmp_path) == {}
    store = await store_at(tmp_path)
    # The runner writes the batch again without it: the rest is stored, the position moves.
    await store.write(WriteBatch(full.batch, (full.entries[0], full.entries[2])))
    await store.write(batch(entry(0, 1, b"a", b"replayed")))
    await store.close()
    assert view_at(tmp_path) == {b"a": b"1", b"b": b"2"}


async def test_the_key_prefix_counts_towards_the_limit(tmp_path: Path) -> None:
    import pytest

    from connectors import PoisonError

    store = await store_at(tmp_path, key_prefix="p" * 200)
    await store.write(batch(entry(0, 0, b"k" * 311, b"fits")))
    with pytest.raises(PoisonError, match="after KV_KEY_PREFIX's 200"):
        await store.write(batch(entry(0, 1, b"k" * 312, b"too long")))
    await store.close()
    assert view_at(tmp_path, key_prefix="p" * 200) == {b"k" * 311: b"fits"}


def test_a_key_prefix_that_leaves_no_room_is_a_config_error() -> None:
    from connectors.config.settings import load

    problems: list[Problem] = []
    env = {"KV_URL": "lmdb:/tmp/x", "KV_KEY_PREFIX": "p" * 256}
    assert load(KVSettings, env, problems) is None
    assert [p.variable for p in problems] == ["KV_KEY_PREFIX"]
    assert "at most 255" in problems[0].expected, problems
    # Redis keys may be 512 MB long.
    assert KVSettings(url="redis://h:6379/0", key_prefix="p" * 1000).key_prefix


async def test_long_connector_and_topic_names_still_keep_positions(tmp_path: Path) -> None:
    store = await store_at(tmp_path, connector="c" * 300, key_prefix="p" * 200)
    topic = "t" * 249
    first = Entry(Record(topic, 0, 5, b"k", b"new"), b"k", b"new")
    await store.write(WriteBatch(Batch((first.source,)), (first,)))
    stale = Entry(Record(topic, 0, 4, b"k", b"old"), b"k", b"old")
    await store.write(WriteBatch(Batch((stale.source,)), (stale,)))
    await store.close()
    assert view_at(tmp_path, key_prefix="p" * 200) == {b"k": b"new"}


# ----------------------------------------------------------------- topic incarnations


def incarnation(topic_id: str, *entries: Entry) -> WriteBatch:
    return WriteBatch(Batch(tuple(e.source for e in entries), {"t": topic_id}), entries)


async def test_a_recreated_topic_is_not_mistaken_for_a_replay(tmp_path: Path) -> None:
    store = await store_at(tmp_path)
    await store.write(incarnation("id-1", *(entry(0, o, b"a%d" % o, b"old") for o in range(10))))
    # Same name, new id: offsets start again at 0 and every record is new.
    await store.write(incarnation("id-2", *(entry(0, o, b"b%d" % o, b"new") for o in range(5))))
    # A replay within the new topic is still a replay.
    await store.write(incarnation("id-2", entry(0, 2, b"b2", b"stale")))
    await store.close()
    stored = view_at(tmp_path)
    assert {k: v for k, v in stored.items() if k.startswith(b"b")} == {
        b"b%d" % o: b"new" for o in range(5)
    }
    assert len(stored) == 15


async def test_without_topic_ids_positions_are_kept_by_name(tmp_path: Path) -> None:
    store = await store_at(tmp_path)
    await store.write(batch(entry(0, 3, b"a", b"a3")))
    await store.write(batch(entry(0, 1, b"a", b"a1")))
    await store.close()
    assert view_at(tmp_path) == {b"a": b"a3"}


# ----------------------------------------------------------------- replayed dead letters


def replayed(offset: int, key: bytes, value: bytes, first_at: int, partition: int = 0) -> Entry:
    """A record `connector dlq replay` sent back: at a new offset, with where it was first
    read from in its headers."""
    headers = (
        ("dlq.original.topic", b"t"),
        ("dlq.original.partition", str(partition).encode()),
        ("dlq.original.offset", str(first_at).encode()),
    )
    return Entry(Record("t", partition, offset, key, value, headers), key, value)


def dead_lettered(*records: Record, written: tuple[Entry, ...] = ()) -> WriteBatch:
    """A batch whose `records` produced no entry (the runner dead-lettered them)."""
    return WriteBatch(Batch(records + tuple(e.source for e in written)), written)


async def test_a_replayed_dead_letter_does_not_undo_newer_data(tmp_path: Path) -> None:
    store = await store_at(tmp_path)
    await store.write(dead_lettered(Record("t", 0, 0, b"K", b"v1-old")))
    await store.write(batch(entry(0, 1, b"K", b"v2-new")))
    await store.write(batch(replayed(2, b"K", b"v1-old", first_at=0)))
    await store.close()
    assert view_at(tmp_path) == {b"K": b"v2-new"}


async def test_a_replayed_dead_letter_is_applied_when_nothing_newer_was_written(
    tmp_path: Path,
) -> None:
    store = await store_at(tmp_path)
    await store.write(
        dead_lettered(Record("t", 0, 0, b"K", b"v1"), written=(entry(0, 1, b"other", b"x"),))
    )
    await store.write(batch(entry(0, 2, b"other", b"y")))
    await store.write(batch(replayed(3, b"K", b"v1", first_at=0)))
    # Replayed once more (the replay's batch was not committed): the same value again.
    await store.write(batch(replayed(3, b"K", b"v1", first_at=0)))
    await store.close()
    assert view_at(tmp_path) == {b"K": b"v1", b"other": b"y"}


async def test_replays_of_one_key_keep_their_first_order(tmp_path: Path) -> None:
    store = await store_at(tmp_path)
    await store.write(
        dead_lettered(Record("t", 0, 0, b"K", b"first"), Record("t", 0, 1, b"K", b"second"))
    )
    await store.write(batch(replayed(2, b"K", b"second", first_at=1)))
    await store.write(batch(replayed(3, b"K", b"first", first_at=0)))
    await store.close()
    assert view_at(tmp_path) == {b"K": b"second"}


async def test_what_the_store_remembers_survives_a_restart(tmp_path: Path) -> None:
    store = await store_at(tmp_path)
    await store.write(dead_lettered(Record("t", 0, 0, b"K", b"v1-old")))
    await store.close()
    store = await store_at(tmp_path)
    await store.write(batch(entry(0, 1, b"K", b"v2-new")))
    await store.close()
    store = await store_at(tmp_path)
    await store.write(batch(replayed(2, b"K", b"v1-old", first_at=0)))
    await store.close()
    assert view_at(tmp_path) == {b"K": b"v2-new"}


async def test_a_replay_the_store_cannot_order_is_poison_not_an_overwrite(
    tmp_path: Path,
) -> None:
    import pytest

    from connectors import PoisonError

    # KV_REPLAY_GUARD_KEYS=0: the store remembers no key, and has passed offset 0.
    store = await store_at(tmp_path, replay_guard_keys="0")
    await store.write(dead_lettered(Record("t", 0, 0, b"K", b"v1-old")))
    await store.write(batch(entry(0, 1, b"K", b"v2-new")))
    late = replayed(2, b"K", b"v1-old", first_at=0)
    with pytest.raises(PoisonError, match="cannot be ordered") as caught:
        await store.write(batch(late))
    assert caught.value.record == late.source
    await store.close()
    assert view_at(tmp_path) == {b"K": b"v2-new"}


async def test_a_replay_into_a_store_that_has_not_reached_it_is_applied(tmp_path: Path) -> None:
    store = await store_at(tmp_path)
    await store.write(batch(replayed(0, b"K", b"v1", first_at=40, partition=0)))
    await store.close()
    assert view_at(tmp_path) == {b"K": b"v1"}


async def test_a_replay_with_a_broken_position_is_poison(tmp_path: Path) -> None:
    import pytest

    from connectors import PoisonError

    store = await store_at(tmp_path)
    bad = Entry(Record("t", 0, 0, b"K", b"v", (("dlq.original.topic", b"t"),)), b"K", b"v")
    with pytest.raises(PoisonError, match="do not name a position"):
        await store.write(batch(bad))
    await store.close()


async def test_remembered_keys_are_capped(tmp_path: Path) -> None:
    store = await store_at(tmp_path, replay_guard_keys="2")
    await store.write(dead_lettered(*(Record("t", 0, o, b"K%d" % o, b"v") for o in range(5))))
    await store.close()
    reopened = await store_at(tmp_path, replay_guard_keys="2")
    assert reopened._guard._count == 2
    await reopened.close()


async def test_a_replay_sent_to_another_topic_is_ordered_by_its_first_topic(
    tmp_path: Path,
) -> None:
    # `dlq replay --to t.retry`: the batch names t.retry's id only; the store knows t's.
    store = await store_at(tmp_path)
    gap = Record("t", 0, 0, b"K", b"v1-old")
    await store.write(WriteBatch(Batch((gap,), {"t": "id-t"}), ()))
    await store.close()
    store = await store_at(tmp_path)  # what it learnt survives a restart
    await store.write(incarnation("id-t", entry(0, 1, b"K", b"v2-new")))
    late = replayed(0, b"K", b"v1-old", first_at=0)
    moved = Entry(late.source._replace(topic="t.retry"), b"K", b"v1-old")
    await store.write(WriteBatch(Batch((moved.source,), {"t.retry": "id-r"}), (moved,)))
    await store.close()
    assert view_at(tmp_path) == {b"K": b"v2-new"}

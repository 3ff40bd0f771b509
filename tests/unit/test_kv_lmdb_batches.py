"""The LMDB store against a model, over many batches: what the store holds is what
applying each record once, in the order read, gives.

Most batches are put as the last entry of each key, in key order, in one LMDB call
(`putmulti`), deletions after: nothing in them is replayed, sent back from the dead letters
or watched by the replay guard. The others go entry by entry. Both must leave the same
store, so the batches drawn here mix the two: replays after a crash, deletions (before and
after puts of their key in one batch), records a transform dropped or split in two, several
partitions writing the same key.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors import Batch, Entry, Record, WriteBatch
from writers.kv.lmdb_store import LmdbStore, LmdbView
from writers.kv.settings import KVSettings

KEYS = [b"a", b"b", b"c", b"d"]

# A record of a partition's log: (key, value), the value None for a deletion.
log_record = st.tuples(st.sampled_from(KEYS), st.one_of(st.none(), st.binary(max_size=6)))
# What a transform made of a record: nothing, the record itself, or two entries.
shape = st.sampled_from(["one", "one", "one", "one", "none", "two"])


@st.composite
def runs(draw: st.DrawFn) -> tuple[dict[int, list[tuple[bytes, bytes | None]]], list]:
    logs = {p: draw(st.lists(log_record, min_size=1, max_size=30)) for p in (0, 1)}
    # What the transform makes of each record, the same each time the record is read: a
    # transform that drops a record once and not on its replay is not this test's subject
    # (a batch with no entries may leave the position where it was).
    made = {
        p: draw(st.lists(shape, min_size=len(log), max_size=len(log))) for p, log in logs.items()
    }
    reads = []  # (partition, first offset, last offset + 1, shapes): in the order read
    for _ in range(draw(st.integers(1, 8))):
        p = draw(st.sampled_from([0, 1]))
        start = draw(st.integers(0, len(logs[p]) - 1))  # below a stored position: a replay
        end = draw(st.integers(start + 1, len(logs[p])))
        reads.append((p, start, end, made[p][start:end]))
    return logs, reads


def entries_of(record: Record, shape: str) -> list[Entry]:
    if shape == "none" or record.key is None:
        return []
    first = Entry(record, record.key, record.value)
    if shape == "one":
        return [first]
    return [first, Entry(record, record.key + b"-copy", record.value)]


def model(logs: dict[int, list[tuple[bytes, bytes | None]]], reads: list) -> dict[bytes, bytes]:
    """Every record applied once, in the order read; a record at or below its partition's
    position is a replay and changes nothing."""
    held: dict[bytes, bytes] = {}
    position = {0: -1, 1: -1}
    for p, start, end, shapes in reads:
        for offset in range(start, end):
            if offset <= position[p]:
                continue
            key, value = logs[p][offset]
            for e in entries_of(Record("t", p, offset, key, value), shapes[offset - start]):
                if e.value is None:
                    held.pop(e.key or b"", None)
                else:
                    held[e.key or b""] = e.value
        position[p] = max(position[p], end - 1)
    return held


async def through_store(path: Path, logs: dict, reads: list) -> dict[bytes, bytes]:
    settings = KVSettings(url=f"lmdb:{path}", sync=False, key_prefix="x/")  # type: ignore[call-arg]
    store = LmdbStore(settings, "c")
    await store.start()
    for p, start, end, shapes in reads:
        records = [Record("t", p, o, *logs[p][o]) for o in range(start, end)]
        entries = [e for r, s in zip(records, shapes, strict=True) for e in entries_of(r, s)]
        await store.write(WriteBatch(Batch(records), tuple(entries)))
    await store.close()
    view = LmdbView(KVSettings(url=f"lmdb:{path}", key_prefix="x/"))  # type: ignore[call-arg]
    try:
        return dict(view.items())
    finally:
        view.close()


@settings(max_examples=150, deadline=None)
@given(runs())
def test_the_store_holds_each_record_applied_once_in_order(run: tuple[dict, list]) -> None:
    logs, reads = run
    with tempfile.TemporaryDirectory() as folder:
        assert asyncio.run(through_store(Path(folder), logs, reads)) == model(logs, reads)


async def test_a_plain_batch_is_put_in_one_call(tmp_path: Path) -> None:
    store = LmdbStore(KVSettings(url=f"lmdb:{tmp_path}", sync=False), "c")  # type: ignore[call-arg]
    await store.start()
    calls: list[int] = []
    put_plain = store._put_plain

    def counted(*args: object) -> bool:
        done = put_plain(*args)  # type: ignore[arg-type]
        calls.append(int(done))
        return done

    store._put_plain = counted  # type: ignore[method-assign]
    records = [Record("t", 0, o, b"k%d" % o, b"v") for o in range(100)]
    await store.write(WriteBatch(Batch(records), tuple(Entry(r, r.key, r.value) for r in records)))
    replay = records[50:] + [Record("t", 0, 100, b"k100", b"v")]
    await store.write(WriteBatch(Batch(replay), tuple(Entry(r, r.key, r.value) for r in replay)))
    await store.close()
    assert calls == [1, 0]  # the second batch replays offsets 50-99: entry by entry

"""`python -m bench.lmdb_apply`: the LMDB writer alone, the last entry of each key in one
`putmulti` in key order, against every entry in runs of `putmulti` (key order) and against
entry by entry, interleaved in one process.

In process, no Kafka: the bench payload's records (100,000 zone keys, values of 67-251
bytes) as R0's entries (the record's key and value), in batches of 40,000 (the default
`BATCH_MAX_MESSAGES`) written by `LmdbStore.apply` with an fsync per batch, as the runtime
does. One entry in `DELETE_EVERY`
deletes its key, so the runs are split as in a real stream. Three stores, filled alike, take
the batches in turn: one as the writer does now (the last entry of each key, in key order),
one with every entry in runs split at deletions (key order; the writer before it), one with
every batch forced entry by entry (the baseline: how every batch was written before
either). The first 10 batches of each (the store filling) are left out.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import tempfile
import time
from operator import itemgetter
from pathlib import Path
from typing import Any

import lmdb

from bench.data import DEFAULT_ZONES, payload, read_records
from connectors import Batch, Entry, Record, WriteBatch
from writers.kv.lmdb_store import LmdbStore
from writers.kv.settings import KVSettings

#: One entry in this many is a deletion (1 %).
DELETE_EVERY = 100


class EveryEntry(LmdbStore):
    """The writer before it put only the last entry of each key: every entry, in key order
    (stable: entries of one key keep their order), in runs of `putmulti` split where one
    deletes."""

    def _put_last(self, txn: lmdb.Transaction, keys: list[bytes], values: list[Any]) -> None:
        pairs = sorted(zip(keys, values, strict=True), key=itemgetter(0))
        cursor, start = txn.cursor(db=self._data), 0
        for end in [i for i, (_, value) in enumerate(pairs) if value is None]:
            cursor.putmulti(pairs[start:end])
            txn.delete(pairs[end][0], db=self._data)
            start = end + 1
        cursor.putmulti(pairs[start:])


def batches(count: int, size: int, zones: int = DEFAULT_ZONES) -> list[WriteBatch]:
    found = list(read_records(payload(count, zones, log=False).path, count))
    out = []
    for start in range(0, len(found), size):
        records = [
            Record("bench", 0, start + i, key, value, (), 0)
            for i, (key, value) in enumerate(found[start : start + size])
        ]
        entries = tuple(
            Entry(r, r.key, None if r.offset % DELETE_EVERY == DELETE_EVERY - 1 else r.value)
            for r in records
        )
        out.append(WriteBatch(Batch(records, {"bench": "id"}), entries))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lmdb_apply", description=__doc__)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=40_000)
    parser.add_argument("--no-sync", action="store_true", help="KV_SYNC=false")
    parser.add_argument(
        "--zones", type=int, default=DEFAULT_ZONES, help="distinct keys (the bench's: 100,000)"
    )
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="lmdb-apply-"))
    try:
        todo = batches(args.messages, args.batch, args.zones)
        stores = {}
        for mode in ("last of each key", "every entry", "one-by-one"):
            settings = KVSettings(url=f"lmdb:{work / mode}", sync=not args.no_sync)  # type: ignore[call-arg]
            stores[mode] = (EveryEntry if mode == "every entry" else LmdbStore)(settings, "bench")
        stores["one-by-one"]._put_plain = lambda *_: False  # type: ignore[method-assign]
        spent = {mode: [0.0, 0.0, 0] for mode in stores}
        for number, write_batch in enumerate(todo):
            for mode, store in stores.items():
                wall, cpu = time.perf_counter(), time.process_time()
                store.apply(write_batch)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                if number >= 10:
                    totals = spent[mode]
                    totals[0] += wall
                    totals[1] += cpu
                    totals[2] += len(write_batch.entries)
        for store in stores.values():
            store._env.close() if store._env is not None else None  # noqa: B018
    finally:
        shutil.rmtree(work, ignore_errors=True)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"{platform.node()} {platform.machine()}, {when}")
    print(
        f"{args.messages:,} entries over {args.zones:,} keys in batches of {args.batch:,}, "
        f"fsync: {not args.no_sync}"
    )
    print("| mode | µs per entry (wall) | µs per entry (CPU) | entries/s |")
    print("|---|---:|---:|---:|")
    base = spent["one-by-one"]
    for mode, (wall, cpu, n) in spent.items():
        print(f"| {mode} | {wall / n * 1e6:.2f} | {cpu / n * 1e6:.2f} | {n / wall:,.0f} |")
    for mode in ("last of each key", "every entry"):
        wall, cpu, _ = spent[mode]
        print(f"{mode} / one-by-one: {base[0] / wall:.2f}x entries/s, CPU {cpu / base[1]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The embedded backend: LMDB, one write transaction per batch.

Three named databases: `data` (key → value, what readers of the store see), `positions`
(per connector and partition: the last offset whose entries the store holds; a partition is
named with its topic's id when the reader knows it) and `guards` (see `replay_guard`). A
batch and its positions are applied in one transaction, so a crash leaves either all of it
or none of it, and the store always holds exactly the records of each partition up to its
position. A record at or below that position is already in the store: a replay of it (a
crash before the Kafka commit, a rebalance) is skipped, so it can never undo newer data.
A dead letter sent back by `connector dlq replay` is judged by `replay_guard` instead.

Why per partition and not per key: every put into a second, per-key tree dirties a second
random page, which doubled the cost of a commit (bench/RESULTS.md). Per partition it is one
get and one put per partition and batch.

A key LMDB cannot hold (over 511 bytes, KV_KEY_PREFIX included) makes its record poison at
the write stage; the runner dead-letters it and writes the rest again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from operator import attrgetter
from pathlib import Path
from typing import Any

import lmdb

from connectors import (
    Entry,
    FatalError,
    PoisonError,
    Record,
    RetriableError,
    TopicPartition,
    WriteBatch,
)
from writers.kv import position
from writers.kv.lmdb_env import LOW_SPACE_BYTES, LmdbView, free_bytes, open_env
from writers.kv.position import fit, reject_keyless
from writers.kv.replay_guard import Changes, ReplayGuard, unwritten
from writers.kv.settings import KVSettings, lmdb_path

__all__ = ["LmdbStore", "LmdbView"]

_log = logging.getLogger("connectors.writers.kv")

_source = attrgetter("source")
_headers = attrgetter("headers")
_key = attrgetter("key")
_value = attrgetter("value")

#: After the scope, in the `positions` database: topic name → the id last seen for it
#: (topic names never start with 0x01).
TOPIC_ID = b"\x01topic-id\x00"

#: LMDB's key limit (MDB_MAXKEYSIZE) in the builds the lmdb package ships; the open
#: environment's own figure replaces it.
MAX_KEY_BYTES = 511


class LmdbStore:
    #: Values are stored as bytes; `Entry.message` is never read (`StoresBytes`).
    stores_bytes = True
    #: Put the usual batch in key order (`_put_plain`); False only to measure it.
    in_key_order = True

    def __init__(self, settings: KVSettings, connector_name: str = "") -> None:
        self._settings = settings
        self._prefix = settings.key_prefix.encode()
        # Positions belong to one consumer group (the connector) and key space: two
        # connectors reading one topic into one store do not skip each other's records.
        self._scope = f"{connector_name}\x00{settings.key_prefix}\x00".encode()
        self._env: lmdb.Environment | None = None
        self._max_key = MAX_KEY_BYTES
        self._guard = ReplayGuard(fit(self._scope, 400), settings.replay_guard_keys)
        self._ids: dict[str, str] = {}  # topic name → the id last seen for it
        # Every write transaction begins and commits on this one thread (`_begin`).
        self._thread = _writer_thread()

    def _open(self) -> lmdb.Environment:
        if self._env is None:
            env = open_env(self._settings)
            self._data = env.open_db(b"data")
            self._positions = env.open_db(b"positions")
            self._guards = env.open_db(b"guards")
            self._max_key = env.max_key_size()
            with env.begin() as txn:
                self._guard.load(txn, self._guards)
            self._env = env
        return self._env

    async def start(self) -> None:
        self._open()

    def _position_key(self, tp: TopicPartition, topic_ids: Mapping[str, str]) -> bytes:
        return fit(self._scope + position.partition_key(tp, topic_ids), self._max_key)

    def apply(self, batch: WriteBatch) -> None:
        """Store the entries of `batch` and move each partition's position past it."""
        self._begin(batch)()

    def _begin(self, batch: WriteBatch) -> Callable[[], None]:
        """Put the entries of `batch` and the partitions' positions in a write transaction,
        and return its commit (with what must follow it); the transaction is aborted, and
        nothing returned, when a put fails. Both run on one thread: LMDB's write lock
        belongs to the thread that began the transaction."""
        env = self._open()
        upto, ids = batch.batch.next_offsets, batch.batch.topic_ids
        txn = env.begin(write=True)
        try:
            stored = {
                tp: position.decode_offset(txn.get(self._position_key(tp, ids), db=self._positions))
                for tp in upto
            }
            changes = self._guard.begin(txn, self._guards)
            skipped = self._put(txn, batch, stored, changes)
            for tp, next_offset in upto.items():
                if next_offset - 1 > stored[tp]:
                    txn.put(
                        self._position_key(tp, ids),
                        position.encode_offset(next_offset - 1),
                        db=self._positions,
                    )
            changes.flush()
            learnt = self._note_ids(txn, ids)
        except BaseException as exc:
            txn.abort()
            if isinstance(exc, lmdb.Error):
                raise self._as_ours(exc) from exc
            raise
        entries = len(batch.entries)

        def commit() -> None:
            try:
                txn.commit()
            except lmdb.Error as exc:
                raise self._as_ours(exc) from exc
            changes.committed()
            self._ids.update(learnt)
            if skipped:
                _log.info(
                    "%d of %d entries come from offsets the store already holds (%s); "
                    "skipped as a replay",
                    skipped,
                    entries,
                    ", ".join(f"{t}[{p}] up to {o}" for (t, p), o in sorted(stored.items())),
                )

        return commit

    def _staged(self, held: list[WriteBatch], begun: Future[None]) -> None:
        """`_begin` then commit, at once, on the writer's thread; `begun` is resolved in
        between. The batch is taken out of `held` so that it is not kept alive (by this
        call's arguments) while the commit runs."""
        try:
            commit = self._begin(held.pop())
        except BaseException as exc:
            begun.set_exception(exc)
            raise
        begun.set_result(None)
        commit()

    def _topic_id_key(self, topic: str) -> bytes:
        return fit(self._scope + TOPIC_ID + topic.encode(), self._max_key)

    def _note_ids(self, txn: lmdb.Transaction, ids: Mapping[str, str]) -> dict[str, str]:
        """Keep the id last seen for each topic name, for replayed records that arrive on
        another topic (`dlq replay --to`) than the one they were first read from."""
        learnt = {t: i for t, i in ids.items() if self._ids.get(t) != i}
        for topic, topic_id in learnt.items():
            txn.put(self._topic_id_key(topic), topic_id.encode(), db=self._positions)
        return learnt

    def _topic_id(self, txn: lmdb.Transaction, topic: str, ids: Mapping[str, str]) -> str | None:
        found = ids.get(topic) or self._ids.get(topic)
        if found is None:
            raw = txn.get(self._topic_id_key(topic), db=self._positions)
            if raw is not None:
                found = self._ids[topic] = bytes(raw).decode()
        return found

    def _put(
        self,
        txn: lmdb.Transaction,
        batch: WriteBatch,
        stored: dict[TopicPartition, int],
        changes: Changes,
    ) -> int:
        """Put or delete every entry newer than the store; the number skipped as replays."""
        ids = batch.batch.topic_ids
        streams = {tp: position.stream(tp[0], tp[1], ids.get(tp[0])) for tp in stored}
        for record in unwritten(batch.batch.records, batch.entries):
            tp = (record.topic, record.partition)
            if record.key is not None and record.offset > stored[tp]:
                changes.unwritten(streams[tp], record.key)
        remembered = {tp: changes.remembered(name) for tp, name in streams.items()}
        watched = {tp: keys for tp, keys in remembered.items() if keys is not None}
        if not watched and self._put_plain(txn, batch, stored):
            return 0
        data, prefix = self._data, self._prefix
        skipped = 0
        for entry in batch.entries:
            source = entry.source
            tp = (source.topic, source.partition)
            if source.offset <= stored[tp]:
                skipped += 1  # already in the store: a replay
                continue
            came = position.origin(source) if source.headers else None
            if came is not None:
                if not self._admit(txn, source, came, ids, changes):
                    continue
            elif watched and (keys := watched.get(tp)) is not None:
                kafka_key = source.key
                if kafka_key is not None and (kafka_key in keys[0] or kafka_key in keys[1]):
                    changes.wrote(streams[tp], kafka_key, source.offset)
            key = prefix + (entry.key or b"")
            try:
                if entry.value is None:
                    txn.delete(key, db=data)
                else:
                    txn.put(key, entry.value, db=data)
            except lmdb.BadValsizeError:
                # Empty keys were refused before: the key is longer than LMDB allows.
                raise PoisonError("write", self._too_long(entry), source) from None
        return skipped

    def _put_plain(
        self, txn: lmdb.Transaction, batch: WriteBatch, stored: dict[TopicPartition, int]
    ) -> bool:
        """The usual batch, whose entries need no judging one by one (none is a replay or
        a dead letter sent back, and the replay guard watches none of their keys): the
        last entry of each key, put in key order in one LMDB call (`putmulti`), and its
        deletions after. False, having changed nothing, for any other batch.

        The last entry of a key is what the store holds after the batch whatever came
        before it in the batch, so the others are not put at all (a batch of 40,000 records
        over the bench's 100,000 keys holds about 33,000). Key order: each put walks the
        B-tree from its root, and a batch of random keys walks it all over; in key order,
        one put finds the pages of the last in the CPU's cache. Keys are distinct by then,
        so a put and a delete commute. `python -m bench.lmdb_apply` gives the figures."""
        entries = batch.entries
        if not entries:
            return True
        first = batch.batch.first_offsets
        if any(first[tp] <= held for tp, held in stored.items()):
            return False  # a replay
        if any(map(_headers, map(_source, entries))):
            return False  # records that may be dead letters sent back
        keys = list(map(_key, entries))
        if self._prefix:
            prefix = self._prefix
            keys = [prefix + key for key in keys]
        if max(map(len, keys)) > self._max_key:
            return False  # judged entry by entry: that record is poison
        self._put_last(txn, keys, list(map(_value, entries)))
        return True

    def _put_last(self, txn: lmdb.Transaction, keys: list[bytes], values: list[Any]) -> None:
        last = dict(zip(keys, values, strict=True))  # a later entry replaces an earlier one
        deleted = [key for key, value in last.items() if value is None] if None in values else []
        for key in deleted:
            del last[key]
        order = sorted(last) if self.in_key_order else list(last)
        txn.cursor(db=self._data).putmulti(zip(order, map(last.__getitem__, order), strict=True))
        for key in deleted:
            txn.delete(key, db=self._data)

    def _admit(
        self,
        txn: lmdb.Transaction,
        source: Record,
        came: position.Origin,
        ids: Mapping[str, str],
        changes: Changes,
    ) -> bool:
        """Whether a replayed record is newer than what the store holds for its key.

        The store remembers the newest offset written for each Kafka key it once did not
        write: older than that, the replay is stale. A key it does not remember is judged by
        the partition's position: one the store has not reached yet is newer; one it has
        passed cannot be ordered, and is refused rather than risk undoing newer data."""
        topic_id = self._topic_id(txn, came.topic, ids)
        name = position.stream(came.topic, came.partition, topic_id)
        newest = None if source.key is None else changes.newest(name, source.key)
        where = f"{source.topic}[{source.partition}]@{source.offset} (first read at {came})"
        if newest is not None:
            if newest > came.offset:
                _log.info(
                    "replayed record %s is older than offset %d of its key, which the store "
                    "holds; skipped",
                    where,
                    newest,
                )
                return False
            if source.key is not None:
                changes.wrote(name, source.key, came.offset)
            return True
        held = position.decode_offset(
            txn.get(
                self._position_key(
                    (came.topic, came.partition), {came.topic: topic_id} if topic_id else {}
                ),
                db=self._positions,
            )
        )
        if came.offset > held:
            return True
        raise PoisonError(
            "write",
            f"replayed record {where} cannot be ordered against the store: it holds "
            f"{came.topic}[{came.partition}] up to offset {held} and does not remember "
            "this key, so newer data may exist; not applied (`connector dlq replay "
            "--as-new` sends dead letters as new records)",
            source,
        )

    def _too_long(self, entry: Entry) -> str:
        size = len(entry.key or b"")
        added = f" after KV_KEY_PREFIX's {len(self._prefix)}" if self._prefix else ""
        return (
            f"key of {size} bytes{added} is longer than LMDB's limit of {self._max_key} "
            "bytes; the LMDB store cannot hold it"
        )

    def _as_ours(self, exc: lmdb.Error) -> Exception:
        if isinstance(exc, lmdb.MapFullError):
            return FatalError(
                f"LMDB map is full at {self._settings.map_size_mb} MiB; raise KV_MAP_SIZE_MB"
            )
        if isinstance(exc, lmdb.BadValsizeError):
            # Keys are checked before they are put; this is a size LMDB refuses that no
            # retry will change.
            return FatalError(f"LMDB refused a key or value size: {exc}")
        path = Path(lmdb_path(self._settings.url))
        free = free_bytes(path)
        if "No space left" in str(exc) or (free is not None and free < LOW_SPACE_BYTES):
            return FatalError(
                f"LMDB store {path} cannot grow: its filesystem is full ({free} bytes "
                f"free; {exc}); free space or enlarge the volume, then restart"
            )
        return RetriableError(f"LMDB write failed: {exc}")

    async def write(self, batch: WriteBatch) -> None:
        await (await self.stage(batch))

    async def stage(self, batch: WriteBatch) -> Awaitable[None]:
        """Put the batch, then commit it on the writer's thread while the runner goes on:
        the commit (pages written, fsync) is about 40 % of an LMDB write of 40,000 entries
        and needs no Python lock, so the next batch is read and transformed meanwhile."""
        loop = asyncio.get_running_loop()
        reject_keyless(batch.entries)
        # A batch without entries changes nothing, unless one of its records is of a key
        # the store must remember from now on (a dead letter may be replayed).
        if not batch.entries and not self._guard.would_remember(batch.batch):
            done: asyncio.Future[None] = loop.create_future()
            done.set_result(None)
            return done
        begun: Future[None] = Future()
        committed = asyncio.wrap_future(self._thread.submit(self._staged, [batch], begun))
        try:
            await asyncio.wrap_future(begun)
        except BaseException:
            # Nothing was begun; the commit's future holds the same error: retrieve it.
            committed.add_done_callback(_retrieve)
            raise
        return committed

    async def check(self) -> None:
        env = self._open()
        with env.begin() as txn:
            txn.stat(self._data)

    async def close(self) -> None:
        # A commit still running (its batch abandoned at shutdown) ends before the store
        # closes under it.
        await asyncio.to_thread(self._thread.shutdown, wait=True)
        self._thread = _writer_thread()  # no thread until used: the store may start again
        if self._env is not None:
            self._env.close()
            self._env = None


def _writer_thread() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="lmdb-writer")


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()

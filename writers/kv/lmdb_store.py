"""The embedded backend: LMDB, one write transaction per batch.

Two named databases: `data` (key → value, what readers of the store see) and `positions`
(per connector and partition: the last offset whose entries the store holds). A batch and
its positions are applied in one transaction, so a crash leaves either all of it or none of
it, and the store always holds exactly the records of each partition up to its position.
A record at or below that position is already in the store: a replay of it (a crash before
the Kafka commit, a rebalance) is skipped, so it can never undo newer data.

Why per partition and not per key: every put into a second, per-key tree dirties a second
random page, which doubled the cost of a commit (bench/RESULTS.md). Per partition it is one
get and one put per partition and batch.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import lmdb

from connectors import Entry, FatalError, RetriableError, TopicPartition, WriteBatch
from writers.kv import position
from writers.kv.position import reject_keyless
from writers.kv.settings import KVSettings, lmdb_path

_log = logging.getLogger("connectors.writers.kv")


def open_env(settings: KVSettings, readonly: bool = False) -> lmdb.Environment:
    path = Path(lmdb_path(settings.url))
    try:
        if not readonly:
            path.mkdir(parents=True, exist_ok=True)
        return lmdb.open(
            str(path),
            map_size=settings.map_size_mb * 1024 * 1024,
            max_dbs=2,
            sync=settings.sync,
            readonly=readonly,
            lock=True,
        )
    except (lmdb.Error, OSError) as exc:
        raise FatalError(f"KV_URL: cannot open LMDB at {path}: {exc}") from exc


# A commit that fails with less than this free on the store's filesystem failed because
# the filesystem is full. LMDB reports that as ENOSPC, or as EIO ("Input/output error")
# when a page write came back short, so the message alone does not tell.
LOW_SPACE_BYTES = 1024 * 1024


def free_bytes(path: Path) -> int | None:
    try:
        stat = os.statvfs(path)
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


class LmdbStore:
    def __init__(self, settings: KVSettings, connector_name: str = "") -> None:
        self._settings = settings
        self._prefix = settings.key_prefix.encode()
        # Positions belong to one consumer group (the connector) and key space: two
        # connectors reading one topic into one store do not skip each other's records.
        self._scope = f"{connector_name}\x00{settings.key_prefix}\x00".encode()
        self._env: lmdb.Environment | None = None

    def _open(self) -> lmdb.Environment:
        if self._env is None:
            self._env = open_env(self._settings)
            self._data = self._env.open_db(b"data")
            self._positions = self._env.open_db(b"positions")
        return self._env

    async def start(self) -> None:
        self._open()

    def apply(self, entries: list[Entry], upto: dict[TopicPartition, int]) -> None:
        """Store `entries` and move each partition's position to `upto` (next offsets)."""
        env = self._open()
        scope, positions, data, prefix = self._scope, self._positions, self._data, self._prefix
        try:
            with env.begin(write=True) as txn:
                stored = {
                    tp: position.decode_offset(
                        txn.get(scope + position.partition_key(tp), db=positions)
                    )
                    for tp in upto
                }
                skipped = 0
                for entry in entries:
                    source = entry.source
                    if source.offset <= stored[(source.topic, source.partition)]:
                        skipped += 1  # already in the store: a replay
                        continue
                    key = prefix + (entry.key or b"")
                    if entry.value is None:
                        txn.delete(key, db=data)
                    else:
                        txn.put(key, entry.value, db=data)
                for tp, next_offset in upto.items():
                    if next_offset - 1 > stored[tp]:
                        txn.put(
                            scope + position.partition_key(tp),
                            position.encode_offset(next_offset - 1),
                            db=positions,
                        )
            if skipped:
                _log.info(
                    "%d of %d entries come from offsets the store already holds (%s); "
                    "skipped as a replay",
                    skipped,
                    len(entries),
                    ", ".join(f"{t}[{p}] up to {o}" for (t, p), o in sorted(stored.items())),
                )
        except lmdb.MapFullError as exc:
            raise FatalError(
                f"LMDB map is full at {self._settings.map_size_mb} MiB; raise KV_MAP_SIZE_MB"
            ) from exc
        except lmdb.Error as exc:
            path = Path(lmdb_path(self._settings.url))
            free = free_bytes(path)
            if "No space left" in str(exc) or (free is not None and free < LOW_SPACE_BYTES):
                raise FatalError(
                    f"LMDB store {path} cannot grow: its filesystem is full ({free} bytes "
                    f"free; {exc}); free space or enlarge the volume, then restart"
                ) from exc
            raise RetriableError(f"LMDB write failed: {exc}") from exc

    async def write(self, batch: WriteBatch) -> None:
        entries = list(batch.entries)
        reject_keyless(entries)
        if entries:
            await asyncio.to_thread(self.apply, entries, batch.batch.next_offsets)

    async def check(self) -> None:
        env = self._open()
        with env.begin() as txn:
            txn.stat(self._data)

    async def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None


class LmdbView:
    """Read-only access for `connector kv get|dump`."""

    def __init__(self, settings: KVSettings) -> None:
        path = Path(lmdb_path(settings.url))
        if not path.exists():
            raise FatalError(f"KV_URL: no LMDB store at {path}")
        self._env = open_env(settings, readonly=True)
        self._data = self._env.open_db(b"data", create=False)
        self._prefix = settings.key_prefix.encode()

    def get(self, key: bytes) -> bytes | None:
        with self._env.begin() as txn:
            value = txn.get(self._prefix + key, db=self._data)
        return None if value is None else bytes(value)

    def items(self, limit: int | None = None) -> list[tuple[bytes, bytes]]:
        found: list[tuple[bytes, bytes]] = []
        with self._env.begin() as txn:
            cursor = txn.cursor(db=self._data)
            if self._prefix:
                cursor.set_range(self._prefix)
            for key, value in cursor:
                if not bytes(key).startswith(self._prefix):
                    break
                if limit is not None and len(found) >= limit:
                    break
                found.append((bytes(key)[len(self._prefix) :], bytes(value)))
        return found

    def close(self) -> None:
        self._env.close()

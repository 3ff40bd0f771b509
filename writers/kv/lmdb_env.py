"""Opening an LMDB store, and reading it (`connector kv get|dump`).

The store's layout and how it is written are `lmdb_store`'s; here is what a reader needs
too: the environment opened alike (the same map size, at most three named databases), and
the free space of its filesystem, which tells a full disk from another write error.
"""

from __future__ import annotations

import os
from pathlib import Path

import lmdb

from connectors import FatalError
from writers.kv.settings import KVSettings, lmdb_path


def open_env(settings: KVSettings, readonly: bool = False) -> lmdb.Environment:
    path = Path(lmdb_path(settings.url))
    try:
        if not readonly:
            path.mkdir(parents=True, exist_ok=True)
        return lmdb.open(
            str(path),
            map_size=settings.map_size_mb * 1024 * 1024,
            max_dbs=3,
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

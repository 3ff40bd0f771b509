"""The networked backend: Redis, one MULTI/EXEC pipeline per batch.

Each entry runs a small Lua script that compares the stored position with the entry's and
writes only when the entry is not older, so a replay never undoes newer data. Positions
live in hashes under `POSITIONS_PREFIX + key`, out of the way of the data keys. Keys may be
as long as Redis allows (512 MB), so no key is too long here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from connectors import Entry, FatalError, RetriableError, WriteBatch, mask_url
from writers.kv.position import origin, reject_keyless, stream
from writers.kv.settings import KVSettings

try:
    import redis
    import redis.asyncio as aioredis
    from redis import exceptions as redis_errors
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "KV_URL=redis://... needs the redis client: pip install 'kafka-connectors[redis]'"
    ) from exc

POSITIONS_PREFIX = b"\xffpos:"

# ARGV: value, deleted ('1'/'0'), partition name, offset, and '1' when the name lacks the
# topic id the stored one may carry (a replayed record whose first topic was not in the
# batch): then a stored "topic NUL partition NUL id" counts as the same partition.
_UPSERT = """
local stored = redis.call('HMGET', KEYS[2], 'tp', 'offset')
local same = stored[1] == ARGV[3]
if not same and ARGV[5] == '1' and stored[1] then
  same = string.sub(stored[1], 1, string.len(ARGV[3]) + 1) == ARGV[3] .. '\\0'
end
if same and tonumber(stored[2]) > tonumber(ARGV[4]) then
  return 0
end
if ARGV[2] == '1' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('HSET', KEYS[2], 'tp', ARGV[3], 'offset', ARGV[4])
return 1
"""

# redis-py turns these replies into their own classes and strips the code from the
# message (an OOM reply becomes OutOfMemoryError("command not allowed ...")), and inside a
# MULTI pipeline it prefixes the message with the command, arguments included; so
# classify by class, and match codes only on the server's own words.
_RETRIABLE = (
    redis_errors.OutOfMemoryError,  # OOM: maxmemory reached under noeviction
    redis_errors.BusyLoadingError,  # LOADING: restarted, reading its data back
    redis_errors.TryAgainError,
    redis_errors.ClusterDownError,
    redis_errors.MasterDownError,
    redis_errors.ReadOnlyError,  # a failover made our server a replica
)
_RETRIABLE_REPLIES = ("OOM", "BUSY", "LOADING", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN")
_PIPELINE_PREFIX = re.compile(r"^Command # \d+ \(.*\) of pipeline caused error: ", re.DOTALL)


def _reply(exc: Exception) -> str:
    """What the server said, without redis-py's pipeline annotation: that repeats the
    command with its arguments, which are our keys and values and must not reach logs."""
    text = str(exc.args[0]) if exc.args else str(exc)
    return _PIPELINE_PREFIX.sub("", text)


def _as_ours(exc: Exception, url: str) -> Exception:
    where = mask_url(url)
    said = _reply(exc)
    if isinstance(exc, redis_errors.AuthenticationError | redis_errors.NoPermissionError):
        return FatalError(f"redis at {where} refused our credentials: {said}")
    if isinstance(exc, redis_errors.ConnectionError | redis_errors.TimeoutError):
        return RetriableError(f"redis at {where} unreachable: {said}")
    if isinstance(exc, _RETRIABLE) or (
        isinstance(exc, redis_errors.ResponseError) and said.startswith(_RETRIABLE_REPLIES)
    ):
        return RetriableError(f"redis at {where} busy: {type(exc).__name__}: {said}")
    return FatalError(f"redis at {where}: {type(exc).__name__}: {said}")


class RedisStore:
    #: Values are stored as bytes; `Entry.message` is never read (`StoresBytes`).
    stores_bytes = True

    def __init__(self, settings: KVSettings) -> None:
        self._settings = settings
        self._prefix = settings.key_prefix.encode()
        self._client: aioredis.Redis = aioredis.Redis.from_url(settings.url)
        self._script: Any = self._client.register_script(_UPSERT)
        self._ids: dict[str, str] = {}  # topic name → the id last seen for it

    async def start(self) -> None:
        await self.check()

    async def write(self, batch: WriteBatch) -> None:
        if not batch.entries:
            return
        entries = list(batch.entries)
        reject_keyless(entries)
        calls = self._calls(entries, batch.batch.topic_ids)
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                for keys, args in calls:
                    await self._script(keys=keys, args=args, client=pipe)
                await pipe.execute()
        except redis_errors.RedisError as exc:
            raise _as_ours(exc, self._settings.url) from exc

    def _calls(
        self, entries: list[Entry], topic_ids: Mapping[str, str]
    ) -> list[tuple[list[bytes], list[bytes | int]]]:
        """The script's keys and arguments per entry: the position compared is the one the
        record was read from, or, for a replayed dead letter, the one it was first read
        from; a partition is named with its topic's id when the reader knows it."""
        self._ids.update(topic_ids)
        names: dict[tuple[str, int], tuple[bytes, bytes]] = {}
        calls: list[tuple[list[bytes], list[bytes | int]]] = []
        for entry in entries:
            source = entry.source
            came = origin(source) if source.headers else None
            topic, partition, offset = came if came is not None else source[:3]
            name = names.get((topic, partition))
            if name is None:
                topic_id = topic_ids.get(topic) or self._ids.get(topic)
                name = (stream(topic, partition, topic_id).encode(), b"0" if topic_id else b"1")
                names[(topic, partition)] = name
            key = self._prefix + (entry.key or b"")
            deleted = b"1" if entry.value is None else b"0"
            args: list[bytes | int] = [entry.value or b"", deleted, name[0], offset, name[1]]
            calls.append(([key, POSITIONS_PREFIX + key], args))
        return calls

    async def check(self) -> None:
        try:
            await self._client.ping()
        except redis_errors.RedisError as exc:
            raise _as_ours(exc, self._settings.url) from exc

    async def close(self) -> None:
        await self._client.aclose()


class RedisView:
    def __init__(self, settings: KVSettings) -> None:
        self._client = redis.Redis.from_url(settings.url)
        self._prefix = settings.key_prefix.encode()

    def get(self, key: bytes) -> bytes | None:
        value = self._client.get(self._prefix + key)
        return value if isinstance(value, bytes) else None

    def items(self, limit: int | None = None) -> list[tuple[bytes, bytes]]:
        keys = sorted(
            k
            for k in self._client.scan_iter(match=self._prefix + b"*", count=1000)
            if isinstance(k, bytes) and not k.startswith(POSITIONS_PREFIX)
        )
        if limit is not None:
            keys = keys[:limit]
        found = []
        for key, value in zip(keys, self._client.mget(keys) if keys else [], strict=True):
            if isinstance(value, bytes):
                found.append((key[len(self._prefix) :], value))
        return found

    def close(self) -> None:
        self._client.close()

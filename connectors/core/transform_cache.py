"""`ctx.cache`: a process-wide TTL cache for what transforms look up (templates, configs).

Built on `cachetools.TTLCache` (expiry and size bound); what is added here is what an async
transform needs from it:

- concurrent `get`s of one key share ONE `load()`: 16 records needing the same template at
  once cause one fetch, the other 15 wait for it;
- a failing `load()` is not cached: every waiter gets its exception, the next `get` loads
  again;
- hits and misses are reported to `on_hit`/`on_miss` (the runtime counts them in Prometheus):
  a miss is a `get` that started a load, a hit one that found the value or joined a load
  already running.

Keys are any hashable value and the cache is shared by every transform of the process: a
transform prefixes its keys (`("template", template_id)`) when several transforms use it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

from cachetools import TTLCache

from connectors.core.errors import RetriableError

T = TypeVar("T")

__all__ = ["TransformCache"]


def _nothing() -> None:
    return None


class TransformCache:
    def __init__(
        self,
        ttl_s: float,
        max_entries: int,
        *,
        timer: Callable[[], float] = time.monotonic,
        on_hit: Callable[[], None] = _nothing,
        on_miss: Callable[[], None] = _nothing,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._values: TTLCache[Hashable, Any] = TTLCache(max_entries, ttl_s, timer=timer)
        self._loading: dict[Hashable, asyncio.Future[Any]] = {}
        self.on_hit = on_hit
        self.on_miss = on_miss

    def __len__(self) -> int:
        return len(self._values)

    def clear(self) -> None:
        self._values.clear()

    async def get(self, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
        """The value cached under `key`, or what `await load()` returns (then cached for
        TRANSFORM_CACHE_TTL_S). `load` is a zero-argument async callable; its exceptions
        reach every caller waiting on it and nothing is cached."""
        try:
            value: T = self._values[key]
        except KeyError:
            pass
        else:
            self.on_hit()
            return value
        running = self._loading.get(key)
        if running is not None:
            self.on_hit()
            shared: T = await asyncio.shield(running)
            return shared
        self.on_miss()
        return await self._load(key, load)

    async def _load(self, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            value = await load()
        except BaseException as exc:
            # Waiters get the failure; a cancelled loader hands them a retriable one,
            # since their own records are not at fault.
            shared = (
                RetriableError(f"loading {key!r} was cancelled")
                if isinstance(exc, asyncio.CancelledError)
                else exc
            )
            future.set_exception(shared)
            future.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        else:
            self._values[key] = value
            future.set_result(value)
            return value
        finally:
            if self._loading.get(key) is future:
                del self._loading[key]

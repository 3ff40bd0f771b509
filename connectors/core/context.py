"""What a transform may use besides its message: `ctx.http` and `ctx.cache`, one per process.

`TransformContext` stays a tuple built per record; its `http` and `cache` properties read
`RESOURCES`, so a record pays nothing for them unless its transform uses them. The runtime
configures `RESOURCES` from the `TRANSFORM_*` settings at start and closes it on shutdown;
outside the runtime (unit tests, `connectors.testing.run_transform`) the defaults apply.

The HTTP client is made on first use, on the event loop that uses it: an `httpx`
connection pool belongs to one loop, so a process that runs several loops one after the
other (tests) gets a fresh client on each, never one bound to a closed loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

from connectors.core.records import Headers
from connectors.core.transform_cache import TransformCache

if TYPE_CHECKING:
    import httpx

__all__ = ["RESOURCES", "TRACE", "ResourceSettings", "TransformResources"]

#: The headers of the record whose transform runs in this task: `ctx.http` sends their
#: trace context on. Set per call by the async stages; empty elsewhere.
TRACE: ContextVar[Headers] = ContextVar("connectors_transform_trace", default=())


@dataclass(frozen=True, slots=True)
class ResourceSettings:
    """The `TRANSFORM_*` values the resources are built from (defaults as documented)."""

    http_timeout_s: float = 10.0
    http_verify_tls: bool = True
    http_ca_file: str | None = None
    cache_ttl_s: float = 300.0
    cache_max_entries: int = 10_000
    http_max_connections: int = 100


def _nothing() -> None:
    return None


class TransformResources:
    def __init__(self) -> None:
        self.settings = ResourceSettings()
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._cache: TransformCache | None = None
        self._stale: list[tuple[httpx.AsyncClient, asyncio.AbstractEventLoop | None]] = []
        self.on_hit: Callable[[], None] = _nothing
        self.on_miss: Callable[[], None] = _nothing

    def configure(
        self,
        settings: ResourceSettings,
        *,
        on_hit: Callable[[], None] = _nothing,
        on_miss: Callable[[], None] = _nothing,
    ) -> None:
        """Use `settings` from now on (a changed cache setting starts an empty cache), and
        report cache hits and misses to `on_hit` and `on_miss`."""
        if settings != self.settings:
            self._cache = None
            if self._client is not None:  # made with other settings: closed by aclose()
                self._stale.append((self._client, self._client_loop))
                self._client = self._client_loop = None
        self.settings = settings
        self.on_hit, self.on_miss = on_hit, on_miss
        if self._cache is not None:
            self._cache.on_hit, self._cache.on_miss = on_hit, on_miss

    @property
    def http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()  # RuntimeError outside a coroutine, as httpx would
        if self._client is None or self._client_loop is not loop or self._client.is_closed:
            from connectors.core.transform_http import new_client

            s = self.settings
            self._client = new_client(
                s.http_timeout_s, s.http_verify_tls, s.http_ca_file, s.http_max_connections
            )
            self._client_loop = loop
        return self._client

    @property
    def cache(self) -> TransformCache:
        if self._cache is None:
            s = self.settings
            self._cache = TransformCache(
                s.cache_ttl_s, s.cache_max_entries, on_hit=self.on_hit, on_miss=self.on_miss
            )
        return self._cache

    async def aclose(self) -> None:
        """Close the HTTP clients this loop made; the cache is kept (it holds plain values,
        valid for the next run of the process)."""
        clients, self._stale = self._stale, []
        if self._client is not None:
            clients.append((self._client, self._client_loop))
        self._client = self._client_loop = None
        running = asyncio.get_running_loop()
        for client, loop in clients:
            if loop is running:
                await client.aclose()


#: The process's transform resources.
RESOURCES = TransformResources()

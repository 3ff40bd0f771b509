"""`ctx.cache`: TTL expiry, one load shared by concurrent gets, failures never cached."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from connectors.core.transform_cache import TransformCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Counted:
    """A cache with a fake clock that counts its hits, misses and loads."""

    def __init__(self, ttl_s: float = 60.0, max_entries: int = 100) -> None:
        self.clock = Clock()
        self.hits = self.misses = self.loads = 0
        self.cache = TransformCache(
            ttl_s, max_entries, timer=self.clock, on_hit=self.hit, on_miss=self.miss
        )

    def hit(self) -> None:
        self.hits += 1

    def miss(self) -> None:
        self.misses += 1

    def loader(
        self, value: str, delay: float = 0.0, error: Exception | None = None
    ) -> Callable[[], Awaitable[str]]:
        async def load() -> str:
            self.loads += 1
            await asyncio.sleep(delay)
            if error is not None:
                raise error
            return value

        return load


async def test_values_expire_after_the_ttl() -> None:
    c = Counted(ttl_s=60.0)
    assert await c.cache.get("k", c.loader("v1")) == "v1"
    c.clock.now += 59.0
    assert await c.cache.get("k", c.loader("v2")) == "v1"
    c.clock.now += 2.0
    assert await c.cache.get("k", c.loader("v3")) == "v3"
    assert (c.loads, c.hits, c.misses) == (2, 1, 2)


async def test_concurrent_gets_of_one_key_share_one_load() -> None:
    c = Counted()
    got = await asyncio.gather(
        *(c.cache.get(("template", 7), c.loader("T", delay=0.01)) for _ in range(16))
    )
    assert got == ["T"] * 16
    assert (c.loads, c.misses, c.hits) == (1, 1, 15)
    assert await c.cache.get(("template", 7), c.loader("other")) == "T"
    assert c.loads == 1


async def test_a_failed_load_reaches_every_waiter_and_is_not_cached() -> None:
    c = Counted()
    failing = c.loader("x", delay=0.01, error=ConnectionError("registry down"))
    results = await asyncio.gather(
        *(c.cache.get("k", failing) for _ in range(5)),
        return_exceptions=True,
    )
    assert all(isinstance(r, ConnectionError) for r in results)
    assert c.loads == 1
    assert len(c.cache) == 0
    assert await c.cache.get("k", c.loader("fixed")) == "fixed"
    assert c.loads == 2


async def test_the_size_is_bounded() -> None:
    c = Counted(max_entries=3)
    for key in range(10):
        await c.cache.get(key, c.loader(str(key)))
    assert len(c.cache) == 3


async def test_a_cancelled_loader_does_not_leave_its_waiters_hanging() -> None:
    c = Counted()
    first = asyncio.ensure_future(c.cache.get("k", c.loader("v", delay=10)))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(c.cache.get("k", c.loader("v")))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    with pytest.raises(Exception, match="cancelled"):
        await asyncio.wait_for(second, timeout=1)
    assert await c.cache.get("k", c.loader("again")) == "again"

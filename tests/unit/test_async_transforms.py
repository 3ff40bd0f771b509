"""Async transforms under the runner: awaited concurrently (TRANSFORM_CONCURRENCY at most),
outputs in record order per partition, mixed with sync steps, retried like sync ones, and a
coroutine from a sync registration is a poison record, not a crash."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from typing import Any

import pytest

from connectors import FatalError, Put, RetriableError, TransformContext
from connectors.core.transform import Chain
from connectors.observability.metrics import REGISTRY
from connectors.testing import arun_transform, run_transform
from connectors.testing.fakes import MemoryDeadLetters, MemoryReader, MemoryWriter
from tests.unit.test_runner import make_runner, pipeline, records, run


class Overlap:
    """Counts calls in flight and remembers the peak."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.calls: list[tuple[int, int]] = []

    async def __call__(self, message: bytes, ctx: TransformContext) -> Put:
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            await asyncio.sleep(random.uniform(0, 0.004))  # noqa: S311 - random delays
            self.calls.append((ctx.partition, ctx.offset))
            return Put(ctx.key, message.upper())
        finally:
            self.now -= 1


def with_chain(*steps: tuple[str, Any], **env: str) -> Any:
    return dataclasses.replace(pipeline(**env), chain=Chain(tuple(steps)))


def interleaved(partitions: int, count: int) -> list[Any]:
    """`count` records for each of `partitions` partitions, interleaved in one batch."""
    per = [records(p, 0, count) for p in range(partitions)]
    return [r for group in zip(*per, strict=True) for r in group]


@pytest.mark.parametrize("concurrency", ["1", "16"])
async def test_outputs_in_record_order_whatever_the_call_order(concurrency: str) -> None:
    overlap = Overlap()
    batch = interleaved(3, 40)
    reader = MemoryReader([batch])
    writer = MemoryWriter()
    pipe = with_chain(("upper", overlap), TRANSFORM_CONCURRENCY=concurrency)
    await run(make_runner(pipe, reader, writer))
    written = [e for w in writer.writes for e in w.entries]
    assert [(e.source.partition, e.source.offset) for e in written] == [
        (r.partition, r.offset) for r in batch
    ]
    assert [e.value for e in written] == [r.value.upper() for r in batch if r.value]
    assert reader.commits == [{("raw", 0): 40, ("raw", 1): 40, ("raw", 2): 40}]
    if concurrency == "1":
        assert overlap.peak == 1
        assert overlap.calls == [(r.partition, r.offset) for r in batch]  # strictly in turn
    else:
        assert overlap.peak == 16
        assert overlap.calls != [(r.partition, r.offset) for r in batch]


def test_sixteen_overlap_one_serialises_with_a_measured_peak() -> None:
    for concurrency, expected in ((1, 1), (16, 16), (64, 50)):
        overlap = Overlap()
        outcomes = run_transform(overlap, [b"x"] * 50, concurrency=concurrency)
        assert overlap.peak == expected
        assert all(o.values == [b"X"] for o in outcomes)


async def test_sync_and_async_steps_mix_and_drop_is_counted() -> None:
    async def fetch(message: bytes, ctx: TransformContext) -> Any:
        await asyncio.sleep(0)
        return None if ctx.offset % 3 == 0 else [message, message + b"+"]  # fan-out

    def tag(message: bytes, ctx: TransformContext) -> Put:
        return Put(f"{ctx.key.decode()}:{message.decode()}", message)  # type: ignore[union-attr]

    reader = MemoryReader([records(0, 0, 6)])
    writer = MemoryWriter()
    labels = {"connector": "unit", "transform": "fetch"}
    before = REGISTRY.get_sample_value("connector_transform_dropped_records_total", labels) or 0
    await run(make_runner(with_chain(("fetch", fetch), ("tag", tag)), reader, writer))
    keys = [e.key for w in writer.writes for e in w.entries]
    assert keys == [f"k0-{o}:{v}".encode() for o in (1, 2, 4, 5) for v in (f"v{o}", f"v{o}+")]
    assert REGISTRY.get_sample_value("connector_transform_dropped_records_total", labels) == (
        before + 2
    )
    assert reader.commits == [{("raw", 0): 6}]


async def test_retriable_from_an_async_transform_keeps_what_came_before() -> None:
    calls: dict[int, int] = {}

    async def flaky(message: bytes, ctx: TransformContext) -> Put:
        calls[ctx.offset] = calls.get(ctx.offset, 0) + 1
        await asyncio.sleep(0.001 * (10 - ctx.offset))  # later records finish first
        if ctx.offset == 4 and calls[4] <= 2:
            raise RetriableError("registry answered 503")
        if ctx.offset == 7:
            raise ValueError("bad record")
        return Put(ctx.key, message)

    reader = MemoryReader([records(0, 0, 10)])
    writer = MemoryWriter()
    letters = MemoryDeadLetters()
    labels = {"connector": "unit", "transform": "flaky", "reason": "retriable"}
    before = REGISTRY.get_sample_value("connector_transform_retries_total", labels) or 0
    await run(make_runner(with_chain(("flaky", flaky)), reader, writer, letters=letters))
    assert [e.source.offset for w in writer.writes for e in w.entries] == [
        0, 1, 2, 3, 4, 5, 6, 8, 9
    ]  # fmt: skip
    assert [(d.record.offset, d.stage) for d in letters.letters] == [(7, "transform:flaky")]
    assert reader.commits == [{("raw", 0): 10}]
    # records before 4 ran once; 4 and every record after it once per attempt
    assert [calls[o] for o in range(4)] == [1, 1, 1, 1]
    assert [calls[o] for o in range(4, 10)] == [3] * 6
    assert REGISTRY.get_sample_value("connector_transform_retries_total", labels) == before + 2
    assert (
        REGISTRY.get_sample_value(
            "connector_transform_in_flight_calls", {"connector": "unit", "transform": "flaky"}
        )
        == 0
    )


async def test_retry_max_attempts_applies_to_async_transforms() -> None:
    async def down(message: bytes, ctx: TransformContext) -> Put:
        raise RetriableError("still down")

    reader = MemoryReader([records(0, 0, 3)])
    writer = MemoryWriter()
    pipe = with_chain(("down", down), RETRY_MAX_ATTEMPTS="3")
    with pytest.raises(FatalError, match=r"transform:down at raw\[0\]@0: still down"):
        await run(make_runner(pipe, reader, writer))
    assert writer.writes == [] and reader.commits == []


class AsyncCall:
    """A callable object whose __call__ is async: registered like a function, awaited."""

    async def __call__(self, message: bytes, ctx: TransformContext) -> bytes:
        await asyncio.sleep(0)
        return message + b"!"


async def test_a_coroutine_from_a_sync_registration_is_poison_not_a_crash() -> None:
    async def render(message: bytes, ctx: TransformContext) -> bytes:
        return message

    def wrapped(message: bytes, ctx: TransformContext) -> Any:
        return render(message, ctx)  # a sync def handing back a coroutine

    reader = MemoryReader([records(0, 0, 2)])
    writer = MemoryWriter()
    letters = MemoryDeadLetters()
    runner = make_runner(
        with_chain(("wrapped", wrapped), DLQ_MAX_RATIO="1"), reader, writer, letters=letters
    )
    await run(runner)
    assert [(d.record.offset, d.stage) for d in letters.letters] == [
        (0, "transform:wrapped"),
        (1, "transform:wrapped"),
    ]
    assert "declare it `async def`" in letters.letters[0].message
    assert reader.commits == [{("raw", 0): 2}]
    # an object with an async __call__ is an async transform, not a sync one
    assert [o.values for o in await arun_transform(AsyncCall(), [b"a", b"b"])] == [[b"a!"], [b"b!"]]


async def test_cache_shares_one_load_between_concurrent_records() -> None:
    loads = 0

    async def render(message: bytes, ctx: TransformContext) -> bytes:
        async def load() -> bytes:
            nonlocal loads
            loads += 1
            await asyncio.sleep(0.01)
            return b"Hello "

        template = await ctx.cache.get(("template", "welcome"), load)
        return template + message

    reader = MemoryReader([records(0, 0, 16)])
    writer = MemoryWriter()
    labels = {"connector": "unit"}
    hits = REGISTRY.get_sample_value("connector_transform_cache_hits_total", labels) or 0
    misses = REGISTRY.get_sample_value("connector_transform_cache_misses_total", labels) or 0
    pipe = with_chain(("render", render), TRANSFORM_CACHE_TTL_S="123")  # a fresh cache
    await run(make_runner(pipe, reader, writer))
    assert loads == 1
    assert writer.store[b"k0-3"] == b"Hello v3"
    assert REGISTRY.get_sample_value("connector_transform_cache_misses_total", labels) == (
        misses + 1
    )
    assert REGISTRY.get_sample_value("connector_transform_cache_hits_total", labels) == hits + 15


async def test_calls_in_flight_are_a_gauge_per_transform() -> None:
    started = 0
    seen: list[float | None] = []
    all_in = asyncio.Event()

    async def hold(message: bytes, ctx: TransformContext) -> bytes:
        nonlocal started
        started += 1
        if started == 4:
            seen.append(
                REGISTRY.get_sample_value(
                    "connector_transform_in_flight_calls",
                    {"connector": "unit", "transform": "hold"},
                )
            )
            all_in.set()
        await asyncio.wait_for(all_in.wait(), timeout=5)
        return message

    reader = MemoryReader([records(0, 0, 8)])
    writer = MemoryWriter()
    await run(make_runner(with_chain(("hold", hold), TRANSFORM_CONCURRENCY="4"), reader, writer))
    assert seen == [4.0]
    assert (
        REGISTRY.get_sample_value(
            "connector_transform_in_flight_calls", {"connector": "unit", "transform": "hold"}
        )
        == 0
    )
    assert len(writer.store) == 8

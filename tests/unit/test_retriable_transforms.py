"""A transform that raises RetriableError: retried with the runner's backoff, never
dead-lettered, nothing committed until it passes; RETRY_MAX_ATTEMPTS ends it."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import pytest

from connectors import FatalError, Put, RetriableError, TransformContext
from connectors.core.transform import Chain
from connectors.observability.metrics import REGISTRY
from connectors.testing.fakes import MemoryDeadLetters, MemoryReader, MemoryWriter
from tests.unit.test_runner import make_runner, pipeline, records, run


def flaky(failures: int, calls: dict[int, int]) -> Any:
    """A transform failing `failures` times for offset 2, counting its calls by offset."""

    def upper(message: bytes, ctx: TransformContext) -> Put:
        calls[ctx.offset] = calls.get(ctx.offset, 0) + 1
        if ctx.offset == 2 and calls[ctx.offset] <= failures:
            raise RetriableError("registry answered 503")
        return Put(ctx.key, message.upper())

    return upper


def with_transform(fn: Any, **env: str) -> Any:
    return dataclasses.replace(pipeline(**env), chain=Chain((("upper", fn),)))


async def test_retried_until_it_passes_and_committed_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: dict[int, int] = {}
    reader = MemoryReader([records(0, 0, 5)])
    writer = MemoryWriter()
    letters = MemoryDeadLetters()
    runner = make_runner(with_transform(flaky(3, calls)), reader, writer, letters=letters)
    labels = {"connector": "unit", "stage": "transform"}
    before = REGISTRY.get_sample_value("connector_retries_total", labels) or 0.0
    with caplog.at_level(logging.WARNING, "connectors.runtime.retry"):
        await run(runner)
    assert writer.store == {f"k0-{o}".encode(): f"V{o}".encode() for o in range(5)}
    assert letters.letters == []
    assert reader.commits == [{("raw", 0): 5}]
    # the failing record is called once per attempt; the records before it are kept
    assert calls == {0: 1, 1: 1, 2: 4, 3: 1, 4: 1}
    assert REGISTRY.get_sample_value("connector_retries_total", labels) == before + 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert all(w.startswith("transform failed (attempt") for w in warnings)
    assert r"transform:upper at raw[0]@2: registry answered 503" in warnings[0]


async def test_retries_exhausted_stop_with_nothing_written_committed_or_dead_lettered() -> None:
    calls: dict[int, int] = {}
    reader = MemoryReader([records(0, 0, 5)])
    writer = MemoryWriter()
    letters = MemoryDeadLetters()
    pipe = with_transform(flaky(10**6, calls), RETRY_MAX_ATTEMPTS="3")
    with pytest.raises(FatalError, match=r"transform:upper at raw\[0\]@2") as raised:
        await run(make_runner(pipe, reader, writer, letters=letters))
    assert "after 3 attempts" in str(raised.value)
    assert calls[2] == 3
    assert writer.writes == [] and writer.store == {}
    assert reader.commits == []
    assert letters.letters == []


async def test_stop_while_a_transform_is_retried_commits_nothing() -> None:
    calls: dict[int, int] = {}
    reader = MemoryReader([records(0, 0, 5)])
    writer = MemoryWriter()
    pipe = with_transform(flaky(10**6, calls), RETRY_INITIAL_MS="50", RETRY_MAX_MS="50")
    runner = make_runner(pipe, reader, writer, until_caught_up=False)
    task = asyncio.create_task(runner.run())

    async def until_retrying() -> None:
        while calls.get(2, 0) < 3:
            await asyncio.sleep(0.005)

    await asyncio.wait_for(until_retrying(), timeout=5)
    runner.stop()
    await asyncio.wait_for(task, timeout=5)
    assert reader.commits == [] and writer.writes == []
    assert reader.closed


def test_other_exceptions_stay_poison_and_retriable_stops_the_batch() -> None:
    def broken(message: bytes, ctx: TransformContext) -> Put:
        if ctx.offset == 1:
            raise ValueError("bad record")
        if ctx.offset == 3:
            raise RetriableError("later", retry_after=2.0)
        return Put(ctx.key, message)

    decoded = [(i, r, r.value) for i, r in enumerate(records(0, 0, 5))]
    applied = Chain((("broken", broken),)).apply_batch(decoded)
    assert [e.source.offset for e in applied.entries] == [0, 2]
    assert [(i, p.stage) for i, _, p in applied.poison] == [(1, "transform:broken")]
    assert applied.stopped is not None
    position, error = applied.stopped
    assert position == 3 and error.retry_after == 2.0
    assert str(error) == "transform:broken at raw[0]@3: later"

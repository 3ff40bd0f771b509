"""Batch transforms: one call per partition's share of a batch, output i for message i, with
exceptions as items, wrong lengths, raised errors and retries."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from connectors import Delete, PoisonError, Put, RetriableError, TransformContext, transform
from connectors.core.registry import Registry
from connectors.core.transform import Chain, Transform
from connectors.testing import arun_transform, run_transform
from connectors.testing.fakes import MemoryDeadLetters, MemoryReader, MemoryWriter
from tests.unit.test_async_transforms import interleaved
from tests.unit.test_runner import make_runner, pipeline, records, run


def registered(fn: Any, *, batch: bool = True) -> Any:
    registry: Registry[Transform] = Registry("transform")
    transform("t", registry, batch=batch)(fn)
    return registry.get("t")


def test_every_output_shape_of_a_sync_batch_transform() -> None:
    def shapes(messages: list[bytes], contexts: list[TransformContext]) -> list[Any]:
        return [
            None,  # dropped
            messages[1] + b"!",  # a value under the record's key
            Put("chosen", messages[2]),
            Delete("gone"),
            [Put("a", b"1"), Put("b", b"2")],  # fan-out
            PoisonError("transform", "unknown template 'x'"),
            KeyError("name"),
            object(),  # cannot be stored
        ]

    outcomes = run_transform(shapes, [f"m{i}".encode() for i in range(8)], batch=True)
    assert outcomes[0].dropped
    assert outcomes[1].values == [b"m1!"]
    assert [(e.key, e.value) for e in outcomes[2].entries] == [(b"chosen", b"m2")]
    assert [(e.key, e.value) for e in outcomes[3].entries] == [(b"gone", None)]
    assert [(e.key, e.value) for e in outcomes[4].entries] == [(b"a", b"1"), (b"b", b"2")]
    assert outcomes[5].poison is not None
    assert outcomes[5].poison.stage == "transform:shapes"
    assert str(outcomes[5].poison) == "unknown template 'x'"  # PoisonError keeps its message
    assert outcomes[6].poison is not None and str(outcomes[6].poison) == "KeyError: 'name'"
    assert outcomes[7].poison is not None and "TypeError" in str(outcomes[7].poison)


async def test_one_call_per_partition_in_offset_order_through_the_runner() -> None:
    calls: list[list[tuple[int, int]]] = []

    async def bulk(messages: list[bytes], contexts: list[TransformContext]) -> list[Any]:
        calls.append([(c.partition, c.offset) for c in contexts])
        await asyncio.sleep(0.001)
        return [Put(c.key, m.upper()) for m, c in zip(messages, contexts, strict=True)]

    batch = interleaved(3, 5)
    reader = MemoryReader([batch])
    writer = MemoryWriter()
    pipe = dataclasses.replace(pipeline(), chain=Chain((("bulk", registered(bulk)),)))
    await run(make_runner(pipe, reader, writer))
    assert sorted(calls) == [[(p, o) for o in range(5)] for p in range(3)]
    written = [(e.source.partition, e.source.offset) for w in writer.writes for e in w.entries]
    assert written == [(r.partition, r.offset) for r in batch]
    assert writer.store[b"k1-3"] == b"V3"
    assert reader.commits == [{("raw", 0): 5, ("raw", 1): 5, ("raw", 2): 5}]


@pytest.mark.parametrize("returned", [[b"one"], [b"1", b"2", b"3", b"4"], b"1234", None])
def test_a_wrong_length_or_shape_makes_every_record_of_the_call_poison(returned: Any) -> None:
    def wrong(messages: list[bytes], contexts: list[TransformContext]) -> Any:
        return returned

    outcomes = run_transform(wrong, [b"a", b"b", b"c"], batch=True)
    for outcome in outcomes:
        assert outcome.poison is not None and outcome.poison.stage == "transform:wrong"
        assert "batch transform 'wrong' returned" in str(outcome.poison)
        assert "expected" in str(outcome.poison)


def test_raising_makes_the_call_poison_only_for_its_partition() -> None:
    def picky(messages: list[bytes], contexts: list[TransformContext]) -> list[bytes]:
        if contexts[0].partition == 1:
            raise ValueError("bulk lookup refused")
        return messages

    outcomes = run_transform(picky, [b"a", b"b", b"c", b"d"], batch=True, partition=[0, 1, 0, 1])
    assert [o.values for o in outcomes] == [[b"a"], [], [b"c"], []]
    assert [o.poison.stage if o.poison else None for o in outcomes] == [
        None, "transform:picky", None, "transform:picky"
    ]  # fmt: skip
    assert outcomes[1].poison is not None
    assert str(outcomes[1].poison) == "ValueError: bulk lookup refused"


async def test_retriable_raised_retries_the_call_and_as_an_item_retries_from_that_record() -> None:
    attempts: list[list[int]] = []

    async def dispatch(messages: list[bytes], contexts: list[TransformContext]) -> list[Any]:
        offsets = [c.offset for c in contexts]
        attempts.append(offsets)
        if len(attempts) == 1:
            raise RetriableError("mail API answered 503")
        if len(attempts) == 2:
            return [
                m if c.offset < 3 else RetriableError("later")
                for m, c in zip(messages, contexts, strict=True)
            ]
        return messages

    reader = MemoryReader([records(0, 0, 6)])
    writer = MemoryWriter()
    letters = MemoryDeadLetters()
    pipe = dataclasses.replace(pipeline(), chain=Chain((("dispatch", registered(dispatch)),)))
    await run(make_runner(pipe, reader, writer, letters=letters))
    assert attempts == [[0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5], [3, 4, 5]]
    assert [e.source.offset for w in writer.writes for e in w.entries] == list(range(6))
    assert letters.letters == []
    assert reader.commits == [{("raw", 0): 6}]


async def test_batch_after_per_record_steps_gets_their_outputs() -> None:
    def split(message: bytes, ctx: TransformContext) -> list[Put]:
        return [Put(f"{ctx.offset}a", message), Put(f"{ctx.offset}b", message)]

    def keys(messages: list[bytes], contexts: list[TransformContext]) -> list[bytes]:
        return [c.key or b"" for c in contexts]

    outcomes = await arun_transform([split, registered(keys)], [b"x", b"y"])
    assert [o.values for o in outcomes] == [[b"0a", b"0b"], [b"1a", b"1b"]]

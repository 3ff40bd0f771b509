"""With sync transforms a batch is decoded and transformed a slice at a time: at most a
slice's decoded messages are alive at once, and the outcome (entries in record order,
poison from either pass, a retried record) is the same as one pass over the whole batch."""

from __future__ import annotations

import dataclasses
import gc
import logging
from typing import Any

import pytest

from connectors import PoisonError, Put, Record, RetriableError, TransformContext
from connectors.core.transform import Chain
from connectors.runtime.decoding import DECODE_SLICE
from connectors.testing.fakes import MemoryDeadLetters, MemoryReader, MemoryWriter
from tests.unit.test_runner import make_runner, pipeline, records, run


class Message:
    """A decoded value that counts how many of its kind are alive."""

    alive = 0
    most = 0

    def __init__(self, value: bytes) -> None:
        self.value = value
        Message.alive += 1
        Message.most = max(Message.most, Message.alive)

    def __del__(self) -> None:
        Message.alive -= 1


class CountingSchemas:
    """The pipeline's schemas, decoding into `Message`s; offsets in `bad` do not decode."""

    all_raw = False  # it decodes, though the topics it wraps are raw

    def __init__(self, inner: Any, bad: set[int]) -> None:
        self.inner = inner
        self.bad = bad

    def items(self) -> Any:
        return self.inner.items()

    def decode(self, record: Record) -> Message:
        if record.offset in self.bad:
            raise PoisonError("decode", "not a message", record)
        assert record.value is not None
        return Message(record.value)


def upper(retry_at: int, calls: dict[int, int]) -> Any:
    """Upper-cases; offsets divisible by 1,000 are poison; `retry_at` fails once."""

    def transform(message: Message, ctx: TransformContext) -> Put:
        calls[ctx.offset] = calls.get(ctx.offset, 0) + 1
        if ctx.offset == retry_at and calls[ctx.offset] == 1:
            raise RetriableError("dependency answered 503")
        if ctx.offset % 1000 == 999:
            raise ValueError("no such zone")
        return Put(ctx.key, message.value.upper())

    return transform


async def test_slices_keep_order_poison_and_retries(caplog: pytest.LogCaptureFixture) -> None:
    count = 3 * DECODE_SLICE + 7
    batch = records(0, 0, count) + records(1, 0, count)
    bad = {5, DECODE_SLICE, 2 * DECODE_SLICE + 3}
    retry_at = DECODE_SLICE + 17
    calls: dict[int, int] = {}
    base = pipeline()
    pipe = dataclasses.replace(
        base,
        schemas=CountingSchemas(base.schemas, bad),
        chain=Chain((("upper", upper(retry_at, calls)),)),
    )
    reader, writer, letters = MemoryReader([batch]), MemoryWriter(), MemoryDeadLetters()
    Message.alive = Message.most = 0
    with caplog.at_level(logging.ERROR, "connectors"):  # kept log records hold exceptions
        await run(make_runner(pipe, reader, writer, letters=letters))

    poison = bad | {o for o in range(count) if o % 1000 == 999}
    expected = [
        (f"k{p}-{o}".encode(), f"V{o}".encode())
        for p in (0, 1)
        for o in range(count)
        if o not in poison
    ]
    [write] = writer.writes
    assert [(e.key, e.value) for e in write.entries] == expected
    assert [(d.record.partition, d.record.offset, d.stage) for d in letters.letters] == [
        (p, o, "decode" if o in bad else "transform:upper") for p in (0, 1) for o in sorted(poison)
    ]
    assert reader.commits == [{("raw", 0): count, ("raw", 1): count}]
    # each offset is in both partitions; the retried one failed once in partition 0
    assert set(calls) == set(range(count)) - bad
    assert calls[retry_at] == 3
    assert all(n == 2 for o, n in calls.items() if o != retry_at)
    gc.collect()  # a poison record's exception and its frames are a cycle
    assert Message.alive == 0


async def test_at_most_a_slice_of_decoded_messages_is_alive(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without poison or retries, one slice's messages at a time. (A poison or retried
    record's traceback keeps its slice alive until the batch is dead-lettered or the
    collector runs: no worse than one pass over the whole batch.)"""
    calls: dict[int, int] = {}
    base = pipeline()
    pipe = dataclasses.replace(
        base,
        schemas=CountingSchemas(base.schemas, set()),
        chain=Chain((("upper", upper(-1, calls)),)),
    )
    batch = [r for p in range(4) for r in records(p, 0, 998)]  # no offset is poison
    reader, writer = MemoryReader([batch]), MemoryWriter()
    Message.alive = Message.most = 0
    with caplog.at_level(logging.ERROR, "connectors"):  # kept log records hold exceptions
        await run(make_runner(pipe, reader, writer))
    assert len(writer.writes[0].entries) == len(batch)
    assert Message.most == DECODE_SLICE < len(batch)
    assert Message.alive == 0


def test_raw_topics_are_sliced_without_a_decode_call_and_to_the_same_result() -> None:
    from connectors.config.pipeline import resolve
    from connectors.runtime.decoding import decode_slice, raw_slice, slicer

    schemas = pipeline().schemas  # TOPIC_SCHEMAS raw=bytes
    batch = records(0, 0, 50) + records(1, 0, 3)
    assert schemas.all_raw and slicer(schemas) is raw_slice
    assert raw_slice(batch, 7) == decode_slice(schemas.decode, batch, 7)
    typed = resolve(
        {
            "CONNECTOR_NAME": "unit",
            "TOPICS": "raw,zones",
            "TOPIC_SCHEMAS": "raw=bytes,zones=edge.v1.ZoneSettingsChanged",
            "PROTO_MODULES": "transforms.proto.edge",
        }
    ).schemas
    assert not typed.all_raw and slicer(typed) is not raw_slice
    _, poison = slicer(typed)([Record("zones", 0, 0, b"k", b"\xff\xff")], 0)
    assert [p[2].stage for p in poison] == ["decode"]

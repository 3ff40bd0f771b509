"""How transform results become entries: drop, one, many, keyed, deleted, chained."""

from __future__ import annotations

from typing import Any

import pytest

from connectors import Delete, PoisonError, Put, Record, TransformContext
from connectors.core.transform import Chain

RECORD = Record("t", 2, 41, b"key", b"value", (("h", b"1"),), 1_700_000_000_000)


def chain(*fns: Any) -> Chain:
    return Chain(tuple((f.__name__, f) for f in fns))


def test_empty_chain_passes_key_and_value_unchanged() -> None:
    (entry,) = Chain(()).apply(RECORD, None)
    assert (entry.key, entry.value, entry.headers) == (b"key", b"value", RECORD.headers)


def test_tombstone_passes_through_as_delete() -> None:
    tomb = Record("t", 0, 1, b"gone", None)
    (entry,) = Chain(()).apply(tomb, None)
    assert entry.value is None and entry.key == b"gone"


def test_none_drops_and_list_fans_out() -> None:
    def drop(m: Any, ctx: TransformContext) -> None:
        return None

    def fan(m: Any, ctx: TransformContext) -> list[Any]:
        return [Put("a", b"1"), Put(b"b", "2"), {"n": 3}, Delete("c")]

    assert chain(drop).apply(RECORD, b"x") == []
    entries = chain(fan).apply(RECORD, b"x")
    assert [(e.key, e.value) for e in entries] == [
        (b"c", None),
        (b"a", b"1"),
        (b"b", b"2"),
        (b"key", b'{"n":3}'),
    ]


def test_chain_feeds_results_forward_and_keeps_keys() -> None:
    seen: list[tuple[Any, bytes | None]] = []

    def first(m: Any, ctx: TransformContext) -> Put:
        return Put("new-key", m + b"!")

    def second(m: Any, ctx: TransformContext) -> bytes:
        seen.append((m, ctx.key))
        return m.upper()

    (entry,) = chain(first, second).apply(RECORD, b"v")
    assert seen == [(b"v!", b"new-key")]
    assert (entry.key, entry.value) == (b"new-key", b"V!")


def test_context_carries_where_the_record_came_from() -> None:
    got: list[TransformContext] = []

    def look(m: Any, ctx: TransformContext) -> None:
        got.append(ctx)

    chain(look).apply(RECORD, b"")
    (ctx,) = got
    assert (ctx.topic, ctx.partition, ctx.offset, ctx.key, ctx.timestamp_ms) == (
        "t",
        2,
        41,
        b"key",
        1_700_000_000_000,
    )


def test_raising_transform_is_poison_naming_the_stage() -> None:
    def broken(m: Any, ctx: TransformContext) -> None:
        raise KeyError("zone")

    with pytest.raises(PoisonError) as caught:
        chain(broken).apply(RECORD, b"")
    assert caught.value.stage == "transform:broken"
    assert caught.value.record is RECORD


def test_each_transform_of_a_longer_chain_is_timed_by_name() -> None:
    def first(m: Any, ctx: TransformContext) -> Any:
        return m

    def second(m: Any, ctx: TransformContext) -> Any:
        return m

    timed = chain(first, second)
    timed.apply(RECORD, b"v")
    timed.apply(RECORD, b"v")
    assert set(timed.seconds) == {"first", "second"}
    assert all(s > 0 for s in timed.seconds.values())
    single = chain(first)
    single.apply(RECORD, b"v")
    assert single.seconds == {}

"""How transform results become entries: drop, one, many, keyed, deleted, chained."""

from __future__ import annotations

import errno
from typing import Any

import pytest

from connectors import Delete, FatalError, PoisonError, Put, Record, TransformContext
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
    applied = timed.apply_batch([(0, RECORD, b"v"), (1, RECORD, b"w")])
    assert [e.value for e in applied.entries] == [b"v", b"w"]
    assert set(applied.seconds) == {"first", "second"}
    assert all(s > 0 for s in applied.seconds.values())
    again = timed.apply_batch([(0, RECORD, b"v")])
    assert again.seconds is not applied.seconds, "each batch gets timings of its own"
    assert chain(first).apply_batch([(0, RECORD, b"v")]).seconds == {}


def test_apply_batch_collects_poison_in_order_and_keeps_the_rest() -> None:
    def picky(m: Any, ctx: TransformContext) -> Any:
        if m == b"bad":
            raise ValueError("bad")
        return m

    records = [RECORD._replace(offset=o) for o in range(3)]
    applied = chain(picky).apply_batch(
        [(0, records[0], b"a"), (1, records[1], b"bad"), (2, records[2], b"c")]
    )
    assert [(e.source.offset, e.value) for e in applied.entries] == [(0, b"a"), (2, b"c")]
    ((index, record, error),) = applied.poison
    assert (index, record, error.stage) == (1, records[1], "transform:picky")


def _generator_that_raises(m: Any, ctx: TransformContext) -> Any:
    yield Put("first", b"1")
    raise RuntimeError("part-way")


BAD_RESULTS: dict[str, Any] = {
    "object": lambda m, ctx: object(),
    "int_key": lambda m, ctx: Put(1, b"v"),
    "set_value": lambda m, ctx: Put(b"k", {1, 2}),
    "float_key_delete": lambda m, ctx: Delete(1.5),
    "surrogate_str": lambda m, ctx: "\udcff",
    "bytes_in_dict": lambda m, ctx: {"v": b"raw"},
    "generator_raises": _generator_that_raises,
    "list_with_object": lambda m, ctx: [Put("a", b"1"), object()],
}


@pytest.mark.parametrize("name", sorted(BAD_RESULTS))
def test_a_result_that_cannot_be_stored_is_poison_of_its_step(name: str) -> None:
    with pytest.raises(PoisonError) as caught:
        Chain(((name, BAD_RESULTS[name]),)).apply(RECORD, b"v")
    assert caught.value.record is RECORD
    assert caught.value.stage == f"transform:{name}"


@pytest.mark.parametrize("name", ["object", "int_key", "generator_raises"])
def test_in_a_longer_chain_the_step_that_returned_it_is_named(name: str) -> None:
    def identity(m: Any, ctx: TransformContext) -> Any:
        return m

    with pytest.raises(PoisonError) as caught:
        Chain(((name, BAD_RESULTS[name]), ("identity", identity))).apply(RECORD, b"v")
    assert caught.value.stage in (f"transform:{name}", "transform:identity")
    if name != "object":  # an object() is passed on, and fails where it is stored
        assert caught.value.stage == f"transform:{name}"


@pytest.mark.parametrize(
    "error",
    [MemoryError(), OSError(errno.EMFILE, "Too many open files"), OSError(errno.ENOMEM, "nomem")],
    ids=["MemoryError", "EMFILE", "ENOMEM"],
)
def test_running_out_of_resources_is_fatal_not_poison(error: Exception) -> None:
    def leaks(m: Any, ctx: TransformContext) -> Any:
        raise error

    with pytest.raises(FatalError, match=r"transform:leaks ran out of resources at t\[2\]@41"):
        chain(leaks).apply_batch([(0, RECORD, b"v")])


def test_a_wrapped_memory_error_is_fatal_and_a_recursion_error_is_poison() -> None:
    def allocate() -> None:
        raise MemoryError

    def wraps(m: Any, ctx: TransformContext) -> Any:
        try:
            allocate()
        except MemoryError as exc:
            raise ValueError("could not allocate") from exc

    def recurses(m: Any, ctx: TransformContext) -> Any:
        return recurses(m, ctx)

    with pytest.raises(FatalError):
        chain(wraps).apply(RECORD, b"v")
    applied = chain(recurses).apply_batch([(0, RECORD, b"v")])
    assert [p[2].stage for p in applied.poison] == ["transform:recurses"]


def test_bytearray_result_is_one_value_not_a_fan_out() -> None:
    def raw(m: Any, ctx: TransformContext) -> Any:
        return bytearray(b"ab")

    (entry,) = chain(raw).apply(RECORD, b"")
    assert (entry.key, entry.value) == (b"key", b"ab")

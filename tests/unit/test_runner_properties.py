"""Whatever the records and whatever a transform does, each record ends one of three ways:
stored by its output, dead-lettered with its provenance, or the run stopped (FatalError)
with nothing committed past it. No other outcome, and no traceback.

Random records (bytes values, tombstones, keys of random sizes, headers with arbitrary
bytes) in random batches go through the runner with the in-memory reader and dead letters
and the real LMDB KV writer; the transform's behaviour is drawn per record: return any
value (None, bytes, str, int, float, object(), sets, dicts, Put and Delete with odd
types, lists, generators), raise, yield then raise, or run out of memory. The expected
store is computed by a reference written from the transform rules in the documentation,
not from the chain's code.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import json
import logging
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors import Delete, FatalError, Put, Record, TransformContext, WriterContext
from connectors.config.pipeline import resolve
from connectors.core.transform import Chain
from connectors.runtime.runner import Runner
from connectors.testing.fakes import MemoryDeadLetters, MemoryReader
from writers.kv import PLUGIN as KV
from writers.kv.lmdb_store import LmdbView
from writers.kv.settings import KVSettings

PIPELINE = resolve(
    {
        "CONNECTOR_NAME": "prop",
        "TOPICS": "raw",
        "TOPIC_SCHEMAS": "raw=bytes",
        "RETRY_INITIAL_MS": "1",
        "RETRY_MAX_MS": "2",
        "RETRY_MAX_ATTEMPTS": "3",
        "DLQ_MAX_RATIO": "1",  # the breaker never trips: every record is judged alone
    }
)

# ---------------------------------------------------------------- what a transform does


class Opaque:
    """Neither bytes, str, JSON nor iterable: what `object()` stands for."""

    def __repr__(self) -> str:
        return "Opaque()"


keys = st.one_of(
    st.none(),
    st.binary(max_size=100),
    st.text(max_size=30),
    st.text(st.characters(categories=["Cs"]), min_size=1, max_size=2),  # not UTF-8
    st.integers(),
    st.floats(allow_nan=False),
)
scalars = st.one_of(
    st.none(),
    st.binary(max_size=50),
    st.text(max_size=20),
    st.text(st.characters(categories=["Cs"]), min_size=1, max_size=2),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.builds(Opaque),
    st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.binary(max_size=5), min_size=1, max_size=2),
    st.frozensets(st.integers(), max_size=3),
)
outputs = st.one_of(
    scalars,
    st.builds(Put, keys, scalars),
    st.builds(Delete, keys),
)
results = st.one_of(
    outputs,
    st.lists(outputs, max_size=4),
    st.lists(outputs, max_size=4).map(tuple),
    st.sets(st.integers() | st.text(max_size=5), max_size=3),
)


@dataclasses.dataclass(frozen=True)
class Returns:
    value: Any


@dataclasses.dataclass(frozen=True)
class Yields:
    items: tuple[Any, ...]
    then_raise: bool


@dataclasses.dataclass(frozen=True)
class Raises:
    error: Callable[[], BaseException]
    name: str


ERRORS = [
    Raises(lambda: ValueError("bad value"), "ValueError"),
    Raises(lambda: KeyError("zone"), "KeyError"),
    Raises(lambda: RecursionError("too deep"), "RecursionError"),
    Raises(lambda: MemoryError(), "MemoryError"),
    Raises(lambda: OSError(errno.EMFILE, "Too many open files"), "EMFILE"),
]
behaviours = st.one_of(
    st.builds(Returns, results),
    st.builds(Yields, st.lists(outputs, max_size=3).map(tuple), st.booleans()),
    st.sampled_from(ERRORS),
)


def _generate(items: tuple[Any, ...], then_raise: bool) -> Iterator[Any]:
    yield from items
    if then_raise:
        raise RuntimeError("yielded, then failed")


def act(behaviour: Any) -> Any:
    if isinstance(behaviour, Raises):
        raise behaviour.error()
    if isinstance(behaviour, Yields):
        return _generate(behaviour.items, behaviour.then_raise)
    return behaviour.value


# ------------------------------------------------------------------------ the reference


class Unstorable(Exception):
    pass


def key_bytes(key: Any) -> bytes | None:
    if key is None or isinstance(key, bytes):
        return key
    if isinstance(key, str):
        try:
            return key.encode()
        except UnicodeEncodeError as exc:
            raise Unstorable from exc
    raise Unstorable


def value_bytes(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:
            return value.encode()
        except UnicodeEncodeError as exc:
            raise Unstorable from exc
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise Unstorable from exc


def expected(record: Record, behaviour: Any) -> str | list[tuple[bytes | None, bytes | None]]:
    """ "fatal", "poison", or the (key, value) pairs the record's outputs store in order
    (value None: a deletion). Deletions leave the chain at once, before the other outputs
    of the same result."""
    if isinstance(behaviour, Raises):
        return "fatal" if behaviour.name in ("MemoryError", "EMFILE") else "poison"
    if isinstance(behaviour, Yields):
        if behaviour.then_raise:
            return "poison"
        outs: list[Any] = list(behaviour.items)
    else:
        value = behaviour.value
        if value is None:
            outs = []
        elif isinstance(value, Put | Delete | bytes | str | dict):
            outs = [value]
        elif isinstance(value, list | tuple | set | frozenset):
            outs = list(value)
        else:
            outs = [value]
    deletes: list[tuple[bytes | None, bytes | None]] = []
    others: list[tuple[bytes | None, bytes | None]] = []
    try:
        for out in outs:
            if isinstance(out, Delete):
                deletes.append((key_bytes(out.key), None))
            elif isinstance(out, Put):
                others.append((key_bytes(out.key), value_bytes(out.value)))
            else:
                others.append((record.key, value_bytes(out)))
    except Unstorable:
        return "poison"
    return deletes + others


# ----------------------------------------------------------------------------- records

headers = st.lists(st.tuples(st.text(max_size=8), st.binary(max_size=16)), max_size=3).map(tuple)


@st.composite
def record_batches(draw: st.DrawFn) -> tuple[list[list[Record]], dict[tuple[int, int], Any]]:
    count = draw(st.integers(min_value=1, max_value=30))
    next_offset = {0: 0, 1: 0}
    records: list[Record] = []
    plan: dict[tuple[int, int], Any] = {}
    for _ in range(count):
        partition = draw(st.sampled_from((0, 1)))
        offset = next_offset[partition] + draw(st.integers(min_value=0, max_value=2))
        next_offset[partition] = offset + 1
        key = draw(st.none() | st.binary(max_size=64))
        value = draw(st.none() | st.binary(max_size=300))
        record = Record("raw", partition, offset, key, value, draw(headers), 1_700_000_000_000)
        records.append(record)
        plan[(partition, offset)] = draw(behaviours)
    cuts = sorted(draw(st.sets(st.integers(min_value=1, max_value=count), max_size=5)) - {count})
    bounds = [0, *cuts, count]
    return [records[a:b] for a, b in zip(bounds, bounds[1:], strict=False)], plan


# ---------------------------------------------------------------------------- the test


class Failures(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def outcome_of(
    batches: list[list[Record]], plan: dict[tuple[int, int], Any]
) -> tuple[dict[bytes, bytes], set[tuple[int, int, str]], dict[tuple[str, int], int], bool]:
    """What the run must leave: store, dead letters (partition, offset, stage), committed
    offsets, and whether it stopped."""
    store: dict[bytes, bytes] = {}
    letters: set[tuple[int, int, str]] = set()
    committed: dict[tuple[str, int], int] = {}
    for batch in batches:
        outcomes = [(r, expected(r, plan[(r.partition, r.offset)])) for r in batch]
        if any(o == "fatal" for _, o in outcomes):
            return store, letters, committed, True
        for record, outcome in outcomes:
            if outcome == "poison":
                letters.add((record.partition, record.offset, "transform:prop"))
            elif any(not key for key, _ in outcome):
                letters.add((record.partition, record.offset, "write"))
            else:
                for key, value in outcome:
                    assert key is not None
                    if value is None:
                        store.pop(key, None)
                    else:
                        store[key] = value
        for record in batch:
            committed[(record.topic, record.partition)] = record.offset + 1
    return store, letters, committed, False


async def run(runner: Runner) -> bool:
    try:
        await asyncio.wait_for(runner.run(), timeout=30)
    except FatalError as exc:
        assert "ran out of resources" in str(exc), exc
        return True
    return False


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(record_batches())
def test_every_record_is_stored_dead_lettered_or_the_run_stopped_before_it(
    drawn: tuple[list[list[Record]], dict[tuple[int, int], Any]],
) -> None:
    batches, plan = drawn

    def prop(message: Any, ctx: TransformContext) -> Any:
        return act(plan[(ctx.partition, ctx.offset)])

    pipeline = dataclasses.replace(PIPELINE, chain=Chain((("prop", prop),)))
    failures = Failures()
    logging.getLogger().addHandler(failures)
    with tempfile.TemporaryDirectory() as tmp:
        settings_ = KVSettings(url=f"lmdb:{Path(tmp) / 'kv'}", sync=False)  # type: ignore[call-arg]
        reader, letters = MemoryReader(batches), MemoryDeadLetters()
        runner = Runner(
            pipeline,
            until_caught_up=True,
            reader=reader,
            writer=KV.build(settings_, WriterContext(connector_name="prop")),
            dead_letters=letters,
        )
        try:
            stopped = asyncio.run(run(runner))
        finally:
            logging.getLogger().removeHandler(failures)
        view = LmdbView(settings_)
        try:
            stored = dict(view.items())
        finally:
            view.close()

    store, dead, committed, must_stop = outcome_of(batches, plan)
    assert stopped == must_stop
    assert stored == store
    assert {(d.record.partition, d.record.offset, d.stage) for d in letters.letters} == dead
    assert len(letters.letters) == len(dead), "each poison record dead-lettered once"
    by_position = {(r.partition, r.offset): r for batch in batches for r in batch}
    for letter in letters.letters:
        assert letter.record == by_position[(letter.record.partition, letter.record.offset)]
        provenance = dict(letter.headers("prop"))
        assert provenance["dlq.original.topic"] == b"raw"
        assert provenance["dlq.original.partition"] == str(letter.record.partition).encode()
        assert provenance["dlq.original.offset"] == str(letter.record.offset).encode()
        assert provenance["dlq.stage"] == letter.stage.encode()
    assert reader.committed == committed
    assert not [r for r in failures.records if r.exc_info], "no traceback logged"

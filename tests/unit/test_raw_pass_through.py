"""Raw topics through a chain of no transforms: the runner builds each entry from its record
(`Chain.passed`) instead of decoding and applying. What a writer receives, what is committed
and what the metrics count must be what the general path gives, for any record."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors import Record
from connectors.config.pipeline import resolve
from connectors.core.records import Entry
from connectors.core.transform import Chain
from connectors.observability.metrics import REGISTRY
from connectors.runtime.decoding import raw_slice
from connectors.runtime.runner import Runner
from connectors.testing.fakes import MemoryDeadLetters, MemoryReader, MemoryWriter

headers = st.lists(st.tuples(st.sampled_from(["a", "traceparent", "é"]), st.binary(max_size=4)))
records = st.builds(
    Record,
    topic=st.sampled_from(["raw", "other"]),
    partition=st.integers(0, 2),
    offset=st.integers(0, 10**9),
    key=st.none() | st.binary(max_size=8),
    value=st.none() | st.binary(max_size=8),
    headers=headers.map(tuple),
    timestamp_ms=st.integers(0, 2**41),
)


@given(st.lists(records, max_size=40))
def test_passed_entries_are_those_apply_batch_makes(batch: list[Record]) -> None:
    for chain in (Chain(()), Chain(()).storing_bytes()):
        decoded, poison = raw_slice(batch)
        assert poison == []
        assert chain.passed(batch) == chain.apply_batch(decoded).entries


def test_a_raw_pass_through_writes_every_record_as_it_came_and_counts_it() -> None:
    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, {"connector": "raw-pass", **labels}) or 0.0

    first = [
        Record("raw", 0, 0, b"k0", b"v0", (("content-type", b"x"),), 1_000),
        Record("raw", 0, 1, None, b"v1", (), 1_001),
        Record("other", 1, 7, b"k7", None, (), 0),  # a tombstone: a deletion
        Record("raw", 2, 3, b"k3", b"", (), 1_002),
    ]
    second = [Record("other", 1, 8, b"k7", b"back", (), 2_000)]
    env = {
        "CONNECTOR_NAME": "raw-pass",
        "TOPICS": "raw,other",
        "TOPIC_SCHEMAS": "raw=bytes,other=bytes",
    }
    pipe = resolve(env)
    reader, writer = MemoryReader([first, second]), MemoryWriter()
    ages = value("connector_record_age_seconds_count", topic="raw")
    raw_in, other_in = (value("connector_records_in_total", topic=t) for t in ("raw", "other"))
    runner = Runner(
        pipe, until_caught_up=True, reader=reader, writer=writer, dead_letters=MemoryDeadLetters()
    )
    asyncio.run(asyncio.wait_for(runner.run(), timeout=10))
    assert runner._passes_raw  # the path under test
    assert [list(w.entries) for w in writer.writes] == [
        [Entry(r, r.key, r.value, r.value, r.headers) for r in first],
        [Entry(second[0], b"k7", b"back", b"back", ())],
    ]
    assert writer.store[b"k7"] == b"back" and writer.store[b"k0"] == b"v0"
    assert reader.commits == [
        {("raw", 0): 2, ("other", 1): 8, ("raw", 2): 4},
        {("other", 1): 9},
    ]
    assert value("connector_records_in_total", topic="raw") == raw_in + 3
    assert value("connector_records_in_total", topic="other") == other_in + 2
    # one age per run of a partition whose first record has a timestamp: raw[0] and raw[2]
    assert value("connector_record_age_seconds_count", topic="raw") == ages + 2


@settings(max_examples=30)
@given(st.lists(records, min_size=1, max_size=30))
def test_records_in_counts_each_topic_of_a_batch(batch: list[Record]) -> None:
    from connectors.runtime.instruments import _per_topic

    expected: dict[str, int] = {}
    for record in batch:
        expected[record.topic] = expected.get(record.topic, 0) + 1
    assert _per_topic(batch) == expected

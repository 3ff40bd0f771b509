"""Writers that store bytes only get entries without their messages, and the same bytes.

A key-value store never reads `Entry.message`; keeping each transform's upb message with
its entry until the batch is written cost about 2 KB per entry. `StoresBytes` lets a writer
say so, and the runner's chain then encodes each message and lets it go at once."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors import Record, TransformContext, WriteBatch, stores_bytes
from connectors.config.pipeline import resolve
from connectors.core.transform import Chain
from connectors.runtime.runner import Runner
from connectors.testing.fakes import MemoryDeadLetters, MemoryReader, MemoryWriter
from harness.samples import zone_events
from transforms.pf_edge import pf_edge
from transforms.proto.edge import ZoneSettingsChanged


def decoded(events: list[ZoneSettingsChanged]) -> list[tuple[int, Record, Any]]:
    return [
        (i, Record("zones", 0, i, e.zone_id.encode(), e.SerializeToString()), e)
        for i, e in enumerate(events)
    ]


def outputs(chain: Chain, events: list[ZoneSettingsChanged]) -> list[tuple[Any, ...]]:
    applied = chain.apply_batch(decoded(events))
    assert not applied.poison and applied.stopped is None
    return [(e.source.offset, e.key, e.value) for e in applied.entries]


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=0, max_value=2**31), st.integers(min_value=1, max_value=300))
def test_bytes_only_entries_are_the_same_bytes_without_messages(seed: int, count: int) -> None:
    events = [s.message for s in zone_events(count, seed=seed)]
    kept = Chain((("pf_edge", pf_edge),))
    bare = kept.storing_bytes()
    assert kept.keeps_messages and not bare.keeps_messages
    assert outputs(bare, events) == outputs(kept, events)
    with_messages = kept.apply_batch(decoded(events)).entries
    assert any(e.message is not None for e in with_messages if e.value is not None)
    assert all(e.message is None for e in bare.apply_batch(decoded(events)).entries)


def test_a_chain_of_two_and_the_pass_through_drop_messages_too() -> None:
    def wrap(message: Any, ctx: TransformContext) -> Any:
        return message  # the message itself: encoded by the runtime

    events = [s.message for s in zone_events(50, seed=3)]
    two = Chain((("pf_edge", pf_edge), ("wrap", wrap)))
    assert outputs(two.storing_bytes(), events) == outputs(two, events)
    assert all(e.message is None for e in two.storing_bytes().apply_batch(decoded(events)).entries)
    none = Chain(())
    assert all(e.message is not None for e in none.apply_batch(decoded(events)).entries)
    assert all(e.message is None for e in none.storing_bytes().apply_batch(decoded(events)).entries)


class BytesWriter(MemoryWriter):
    stores_bytes = True

    async def write(self, batch: WriteBatch) -> None:
        self.messages = [e.message for e in batch.entries]
        await super().write(batch)


def test_the_declaration_is_read_only_when_true() -> None:
    assert stores_bytes(BytesWriter())
    assert not stores_bytes(MemoryWriter())  # a writer that says nothing keeps its messages
    from writers.kv.lmdb_store import LmdbStore
    from writers.kv.redis_store import RedisStore

    assert LmdbStore.stores_bytes is True and RedisStore.stores_bytes is True


def test_the_runner_hands_a_bytes_writer_entries_without_messages() -> None:
    events = [s.message for s in zone_events(40, seed=5) if not s.message.deleted]
    records = [
        Record("zones", 0, i, e.zone_id.encode(), e.SerializeToString())
        for i, e in enumerate(events)
    ]
    env = {
        "CONNECTOR_NAME": "unit",
        "TOPICS": "zones",
        "TOPIC_SCHEMAS": "zones=edge.v1.ZoneSettingsChanged",
        "TRANSFORMS": "pf_edge",
        "PROTO_MODULES": "transforms.proto.edge",
    }
    stored: dict[str, dict[bytes | None, bytes]] = {}
    bytes_writer = BytesWriter()
    for name, writer in (("bytes", bytes_writer), ("messages", MemoryWriter())):
        reader = MemoryReader([list(records)])
        runner = Runner(
            resolve(env),
            until_caught_up=True,
            reader=reader,
            writer=writer,
            dead_letters=MemoryDeadLetters(),
        )
        asyncio.run(asyncio.wait_for(runner.run(), timeout=10))
        assert reader.commits == [{("zones", 0): len(records)}]
        stored[name] = dict(writer.store)
    assert stored["bytes"] == stored["messages"] and len(stored["bytes"]) == len(
        {e.zone_id for e in events}
    )
    assert bytes_writer.messages and all(m is None for m in bytes_writer.messages)

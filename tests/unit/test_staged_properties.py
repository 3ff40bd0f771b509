"""Whatever mix of sync, async and batch steps a chain has, and however long each call takes,
every record ends one way: stored by its outputs (in record order per partition),
dead-lettered naming the step that rejected it, dropped, or the run stopped (FatalError)
before it was committed. Retriable failures are retried until they pass, never lost.

The expected outcome is computed from the rules in the documentation, record by record,
not from the stages' code.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors import FatalError, Put, Record, RetriableError, TransformContext
from connectors.config.pipeline import resolve
from connectors.core.transform import Chain
from connectors.core.transform_kinds import BatchTransform
from connectors.runtime.runner import Runner
from connectors.testing.fakes import MemoryDeadLetters, MemoryReader, MemoryWriter

PIPELINE = resolve(
    {
        "CONNECTOR_NAME": "staged",
        "TOPICS": "raw",
        "TOPIC_SCHEMAS": "raw=bytes",
        "RETRY_INITIAL_MS": "1",
        "RETRY_MAX_MS": "1",
        "DLQ_MAX_RATIO": "1",
    }
)

# What a step does with one record: pass (appends its tag), drop, poison, fail retriably
# `n` times then pass, or run out of memory.
ACTS = st.sampled_from(["pass", "pass", "pass", "drop", "poison", "retry1", "retry2"])


@dataclasses.dataclass
class Plan:
    kinds: list[str]  # per step: sync, async, batch
    concurrency: int
    acts: dict[tuple[int, int, int], str]  # (step, partition, offset) -> act
    delays: dict[tuple[int, int, int], int]  # milliseconds/10 before an async call answers
    calls: dict[tuple[int, int, int], int] = dataclasses.field(default_factory=dict)


@st.composite
def plans(draw: st.DrawFn) -> tuple[list[list[Record]], Plan]:
    steps = draw(st.integers(min_value=1, max_value=3))
    kinds = draw(
        st.lists(st.sampled_from(["sync", "async", "batch"]), min_size=steps, max_size=steps)
    )
    count = draw(st.integers(min_value=1, max_value=25))
    offsets = {0: 0, 1: 0}
    records: list[Record] = []
    acts: dict[tuple[int, int, int], str] = {}
    delays: dict[tuple[int, int, int], int] = {}
    for _ in range(count):
        p = draw(st.sampled_from((0, 1)))
        o = offsets[p]
        offsets[p] += 1
        records.append(Record("raw", p, o, f"{p}-{o}".encode(), b"v"))
        for step in range(steps):
            rare = draw(st.integers(min_value=0, max_value=60)) == 0
            acts[(step, p, o)] = "fatal" if rare else draw(ACTS)
            delays[(step, p, o)] = draw(st.integers(min_value=0, max_value=3))
    cuts = sorted(draw(st.sets(st.integers(min_value=1, max_value=count), max_size=3)) - {count})
    bounds = [0, *cuts, count]
    batches = [records[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    concurrency = draw(st.sampled_from([1, 2, 16]))
    return batches, Plan(kinds, concurrency, acts, delays)


def outcome(plan: Plan, step: int, ctx: TransformContext, value: bytes) -> Any:
    """What step `step` returns for the record, or raises."""
    where = (step, ctx.partition, ctx.offset)
    act = plan.acts[where]
    plan.calls[where] = plan.calls.get(where, 0) + 1
    if act == "drop":
        return None
    if act == "poison":
        return ValueError(f"step {step} refused")
    if act == "fatal":
        return MemoryError()
    if act.startswith("retry") and plan.calls[where] <= int(act[5:]):
        return RetriableError(f"step {step} later")
    return Put(ctx.key, value + str(step).encode())


def raised(result: Any) -> Any:
    if isinstance(result, BaseException):
        raise result
    return result


def chain_of(plan: Plan) -> Chain:
    steps: list[tuple[str, Any]] = []
    for step, kind in enumerate(plan.kinds):

        def sync(message: bytes, ctx: TransformContext, step: int = step) -> Any:
            return raised(outcome(plan, step, ctx, message))

        async def async_(message: bytes, ctx: TransformContext, step: int = step) -> Any:
            await asyncio.sleep(plan.delays[(step, ctx.partition, ctx.offset)] / 10_000)
            return raised(outcome(plan, step, ctx, message))

        async def batch(
            messages: list[bytes], contexts: list[TransformContext], step: int = step
        ) -> list[Any]:
            await asyncio.sleep(
                max(plan.delays[(step, c.partition, c.offset)] for c in contexts) / 10_000
            )
            return [outcome(plan, step, c, m) for m, c in zip(messages, contexts, strict=True)]

        fn = {"sync": sync, "async": async_, "batch": BatchTransform(batch)}[kind]
        steps.append((f"s{step}", fn))
    return Chain(tuple(steps))


def expected(
    batches: list[list[Record]], plan: Plan
) -> tuple[dict[bytes, bytes], set[Any], dict[Any, int], bool]:
    store: dict[bytes, bytes] = {}
    letters: set[tuple[int, int, str]] = set()
    committed: dict[tuple[str, int], int] = {}
    for batch in batches:
        fates = []
        for r in batch:
            value, fate = b"v", "stored"
            for step in range(len(plan.kinds)):
                act = plan.acts[(step, r.partition, r.offset)]
                if act in ("drop", "poison", "fatal"):
                    fate = f"{act}:s{step}"
                    break
                value += str(step).encode()
            fates.append((r, fate, value))
        if any(f.startswith("fatal") for _, f, _ in fates):
            return store, letters, committed, True
        for r, fate, value in fates:
            if fate == "stored":
                store[r.key or b""] = value
            elif fate.startswith("poison"):
                letters.add((r.partition, r.offset, "transform:" + fate.split(":")[1]))
            committed[("raw", r.partition)] = r.offset + 1
    return store, letters, committed, False


async def run(runner: Runner) -> bool:
    try:
        await asyncio.wait_for(runner.run(), timeout=30)
    except FatalError as exc:
        assert "ran out of resources" in str(exc), exc
        return True
    return False


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans())
def test_every_record_is_stored_dropped_dead_lettered_or_the_run_stopped_before_it(
    drawn: tuple[list[list[Record]], Plan],
) -> None:
    batches, plan = drawn
    transform = PIPELINE.transform.model_copy(update={"concurrency": plan.concurrency})
    pipeline = dataclasses.replace(PIPELINE, chain=chain_of(plan), transform=transform)
    reader, writer, letters = MemoryReader(batches), MemoryWriter(), MemoryDeadLetters()
    runner = Runner(
        pipeline, until_caught_up=True, reader=reader, writer=writer, dead_letters=letters
    )
    stopped = asyncio.run(run(runner))

    store, dead, committed, must_stop = expected(batches, plan)
    assert stopped == must_stop
    assert writer.store == store
    assert {(d.record.partition, d.record.offset, d.stage) for d in letters.letters} == dead
    assert len(letters.letters) == len(dead)
    assert reader.committed == committed
    for write in writer.writes:  # record order per partition within every write
        for p in (0, 1):
            offsets = [e.source.offset for e in write.entries if e.source.partition == p]
            assert offsets == sorted(offsets)

"""The probes of `connector check --connect`, each printing its `ok|fail` line(s).

They run in order and share one `Session` (the deadline, what was found): the brokers
first (nothing else is tried against a cluster that does not answer), then each topic,
the group's offsets, the sampled messages decoded per topic, the transform chain on the
decoded ones, the dead-letter topic, and the writer. Nothing here writes or commits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from connectors.config.pipeline import Pipeline
from connectors.core.errors import ConnectorError
from connectors.core.records import TopicPartition
from connectors.core.transform import Decoded
from connectors.core.writer import WriterContext
from connectors.kafka.probe import BrokerProbe, TopicFound
from connectors.runtime.dry_run import decode_sample, transform_sample

__all__ = ["Probe", "Session", "kafka_probes", "transforms_probe", "writer_probe"]

T = TypeVar("T")
_SHOWN_TYPES = 3


@dataclass(frozen=True, slots=True)
class Probe:
    ok: bool
    name: str
    detail: str

    def line(self) -> str:
        return f"{'ok' if self.ok else 'fail'} {self.name}: {self.detail}"


class Session:
    """The probes' shared state: the deadline, the lines printed, what was found."""

    def __init__(self, pipeline: Pipeline, deadline_s: float, sample: int) -> None:
        self.pipeline = pipeline
        self.deadline_s = deadline_s
        self.sample = sample
        self._end = time.monotonic() + deadline_s
        self.probes: list[Probe] = []
        self.topics: dict[str, TopicFound] = {}
        self.decoded: list[Decoded] = []

    def report(self, ok: bool, name: str, detail: str) -> None:
        probe = Probe(ok, name, detail)
        self.probes.append(probe)
        print(probe.line(), flush=True)

    async def bounded(self, name: str, call: Callable[[], Awaitable[T]]) -> T | None:
        """`call()` within what is left of the deadline; a failure is reported under
        `name` and None returned."""
        left = max(0.001, self._end - time.monotonic())
        try:
            return await asyncio.wait_for(call(), left)
        except TimeoutError:
            self.report(False, name, f"no answer within the deadline ({self.deadline_s:g} s)")
        except ConnectorError as exc:
            self.report(False, name, str(exc))
        return None


async def kafka_probes(session: Session, probe: BrokerProbe) -> None:
    """Brokers, topics, group offsets, decoding; later ones only once the brokers answer."""
    pipeline = session.pipeline
    connected = await session.bounded("broker", probe.connect)
    if connected is None:
        return
    session.report(True, "broker", connected)
    names = [topic for topic, _ in pipeline.schemas.items()]
    dlq = [pipeline.dlq_topic] if pipeline.runtime.on_error == "dlq" else []
    found = await session.bounded("topics", lambda: probe.topics([*names, *dlq]))
    if found is None:
        return
    for name in names:
        _topic_line(session, found[name])
    session.topics = {n: found[n] for n in names if found[n].exists}
    await _group(session, probe)
    for name, topic in session.topics.items():
        await _decode(session, probe, name, topic.partitions)
    if dlq:
        _dead_letters(session, found[dlq[0]])


def _topic_line(session: Session, topic: TopicFound) -> None:
    name = f"topic {topic.name}"
    if topic.error is not None:
        session.report(False, name, topic.error)
    elif not topic.exists:
        session.report(False, name, "does not exist (the connector never creates its topics)")
    else:
        retention = topic.retention_ms or "unknown"
        session.report(True, name, f"{topic.partitions} partitions, retention.ms={retention}")


async def _group(session: Session, probe: BrokerProbe) -> None:
    group = session.pipeline.group_id
    partitions: set[TopicPartition] = {
        (name, p) for name, topic in session.topics.items() for p in range(topic.partitions)
    }
    if not partitions:
        return
    name = f"group {group}"
    offsets = await session.bounded(name, lambda: probe.offsets(group, partitions))
    if offsets is None:
        return
    committed, ends = offsets
    done = {tp: c for tp, c in committed.items() if c is not None}
    lag = sum(max(0, ends.get(tp, c) - c) for tp, c in done.items())
    if not done:
        reset = session.pipeline.kafka.auto_offset_reset
        detail = (
            f"no committed offsets on {len(partitions)} partitions (a first start reads from "
            f"the {reset} offset, KAFKA_AUTO_OFFSET_RESET={reset})"
        )
    else:
        detail = f"committed offsets on {len(done)}/{len(partitions)} partitions, lag {lag}"
        worst = max(done, key=lambda tp: ends.get(tp, done[tp]) - done[tp])
        detail += f" (most on {worst[0]}[{worst[1]}]: {ends.get(worst, 0) - done[worst]})"
    session.report(True, name, detail)


async def _decode(session: Session, probe: BrokerProbe, topic: str, partitions: int) -> None:
    name = f"decode {topic}"
    records = await session.bounded(name, lambda: probe.sample(topic, partitions, session.sample))
    if records is None:
        return
    schema = session.pipeline.schemas[topic]
    outcome = decode_sample(schema, records)
    session.decoded.extend(outcome.decoded)
    seen = ", ".join(
        f"{kind!r} x{count}" for kind, count in outcome.content_types.most_common(_SHOWN_TYPES)
    )
    if not outcome.sampled:
        session.report(True, name, "no messages to sample (the topic is empty)")
    elif outcome.failed:
        session.report(
            False,
            name,
            f"{outcome.failed} of the last {outcome.sampled} messages do not decode as "
            f"{schema.type_name}; content-type seen: {seen}; first: {outcome.first_failure}",
        )
    else:
        session.report(
            True,
            name,
            f"the last {outcome.sampled} messages decode as {schema.type_name}; "
            f"content-type seen: {seen}",
        )


def _dead_letters(session: Session, topic: TopicFound) -> None:
    settings = session.pipeline.dead_letter
    name = f"dead letters {topic.name}"
    if topic.exists:
        session.report(True, name, f"the topic exists ({topic.partitions} partitions)")
    elif topic.error is not None:
        session.report(False, name, topic.error)
    elif settings.create:
        session.report(
            True, name, "does not exist yet: DLQ_CREATE=true creates it at start (check does not)"
        )
    else:
        session.report(
            False, name, "does not exist and DLQ_CREATE=false: create it, or set DLQ_CREATE=true"
        )


async def transforms_probe(session: Session) -> None:
    """The chain over every decoded sample; its output counted, never written."""
    pipeline = session.pipeline
    if not pipeline.chain.steps or not session.decoded:
        if pipeline.chain.steps and session.topics:
            session.report(True, "transforms", "no decoded messages to run the chain on")
        return
    decoded = [(i, record, message) for i, (_, record, message) in enumerate(session.decoded)]
    outcome = await session.bounded(
        "transforms", lambda: transform_sample(pipeline.chain, pipeline.transform, decoded)
    )
    if outcome is None:
        return
    counts = (
        f"{outcome.records} messages -> {outcome.entries} entries, {outcome.dropped} dropped, "
        f"{outcome.poison} poison, {outcome.retriable} retriable (nothing written)"
    )
    if outcome.poison or outcome.retriable:
        session.report(False, "transforms", f"{counts}; first: {outcome.first_failure}")
    else:
        session.report(True, "transforms", counts)


async def writer_probe(session: Session) -> None:
    """The writer started, checked and closed: what `connector run` does first."""
    pipeline = session.pipeline
    name = f"writer {pipeline.writer.name}"
    context = WriterContext(connector_name=pipeline.name, group_id=pipeline.group_id)
    try:
        writer = pipeline.writer.build(pipeline.writer_settings, context)
    except ConnectorError as exc:
        session.report(False, name, str(exc))
        return

    async def trial() -> str:
        try:
            await writer.start()
            await writer.check()
        finally:
            await writer.close()
        return "started, check() passed, closed (nothing written)"

    detail = await session.bounded(name, trial)
    if detail is not None:
        session.report(True, name, detail)

"""Decoding and transforming sampled records as the pipeline would, writing nothing.

`connector check --connect` reads the last messages of each topic and passes them here:
each is decoded with its topic's bound type (`TopicSchema.decode`, the reader's own), and
the decoded ones go through the transform chain with the runtime's code (`Chain.apply_batch`
for a sync chain, `apply_staged` otherwise), `ctx.http` and `ctx.cache` configured from
the TRANSFORM_* settings. The entries produced are counted and dropped: nothing reaches a
writer or the dead-letter topic. A transform that calls a service through `ctx.http` does
call it (the check runs the real chain).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from connectors.config.schemas import TopicSchema
from connectors.config.transforms import TransformSettings
from connectors.core.context import RESOURCES
from connectors.core.errors import ConnectorError
from connectors.core.records import TYPE_HEADER, Record
from connectors.core.staged import apply_staged
from connectors.core.transform import Applied, Chain, Decoded

__all__ = ["ChainOutcome", "DecodeOutcome", "decode_sample", "transform_sample"]


@dataclass
class DecodeOutcome:
    """How many of a topic's sampled records decode with its type, and what they declare."""

    sampled: int = 0
    decoded: list[Decoded] = field(default_factory=list)
    failed: int = 0
    first_failure: str = ""
    content_types: Counter[str] = field(default_factory=Counter)


@dataclass
class ChainOutcome:
    """What the chain made of the decoded records (counted, never written)."""

    records: int = 0
    entries: int = 0
    dropped: int = 0
    poison: int = 0
    retriable: int = 0
    first_failure: str = ""


def decode_sample(schema: TopicSchema, records: Sequence[Record]) -> DecodeOutcome:
    outcome = DecodeOutcome(sampled=len(records))
    for index, record in enumerate(records):
        declared = record.header(TYPE_HEADER)
        outcome.content_types[
            "(none)" if declared is None else declared.decode("utf-8", "replace")
        ] += 1
        try:
            message = schema.decode(record)
        except ConnectorError as exc:
            outcome.failed += 1
            if not outcome.first_failure:
                outcome.first_failure = (
                    f"partition {record.partition} offset {record.offset}: {exc}"
                )
            continue
        outcome.decoded.append((index, record, message))
    return outcome


async def transform_sample(
    chain: Chain, settings: TransformSettings, decoded: Sequence[Decoded]
) -> ChainOutcome:
    """Run `chain` over `decoded`; a record whose transform asks to be retried is counted
    and skipped, so one slow dependency does not hide what the others become."""
    outcome = ChainOutcome(records=len(decoded))
    RESOURCES.configure(settings.resources())
    try:
        remaining = list(decoded)
        while remaining:
            applied = await _apply(chain, settings, remaining)
            _count(outcome, applied)
            if applied.stopped is None:
                break
            position, error = applied.stopped
            outcome.retriable += 1
            _first(outcome, remaining[position][1], f"retriable: {error}")
            remaining = remaining[position + 1 :]
    finally:
        await RESOURCES.aclose()
    return outcome


async def _apply(chain: Chain, settings: TransformSettings, decoded: list[Decoded]) -> Applied:
    if chain.is_sync:
        return chain.apply_batch(decoded)
    return await apply_staged(chain, decoded, concurrency=settings.concurrency)


def _count(outcome: ChainOutcome, applied: Applied) -> None:
    outcome.entries += len(applied.entries)
    outcome.dropped += sum((applied.dropped or {}).values())
    outcome.poison += len(applied.poison)
    for _index, record, error in applied.poison[:1]:
        _first(outcome, record, f"poison: {error}")


def _first(outcome: ChainOutcome, record: Record, text: str) -> None:
    if not outcome.first_failure:
        where = f"{record.topic} partition {record.partition} offset {record.offset}"
        outcome.first_failure = f"{where}: {text}"

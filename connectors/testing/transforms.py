"""Run a transform over messages without a broker: what each record would become.

    from connectors.testing import run_transform

    outcomes = run_transform("render_email", [event1, event2], keys=[b"a", b"b"])
    assert outcomes[0].entries[0].value == b"..."
    assert outcomes[1].poison is not None          # would be dead-lettered

The transform runs exactly as under the runner (the same chain and stages: sync inline,
async calls concurrently, batch transforms once per partition, `ctx.http` and `ctx.cache`
available), and each record's outcome is reported: its entries (what the writer would get),
or the poison error (what the dead letter would say), or the RetriableError a transform
raised for it (the runner would retry it; here the records after it are run again without
it, so that every record has an outcome). Running out of memory raises FatalError.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, cast

from google.protobuf.message import Message

from connectors.core.context import RESOURCES, ResourceSettings
from connectors.core.errors import PoisonError, RetriableError
from connectors.core.records import Entry, Headers, Record
from connectors.core.staged import apply_staged
from connectors.core.transform import TRANSFORMS, Applied, Chain, Decoded, Transform
from connectors.core.transform_kinds import BatchTransform, misfit

__all__ = ["Outcome", "TransformLike", "arun_transform", "run_transform"]

TransformLike = str | Callable[..., Any]
"""A registered transform's name, or the function itself."""


class Outcome(NamedTuple):
    """What one record became: `entries` (empty when dropped), or `poison` (the error its
    dead letter would carry: `poison.stage` is `transform:<name>`), or `retry` (the
    RetriableError a transform raised for it)."""

    record: Record
    entries: list[Entry]
    poison: PoisonError | None = None
    retry: RetriableError | None = None

    @property
    def dropped(self) -> bool:
        return not self.entries and self.poison is None and self.retry is None

    @property
    def values(self) -> list[bytes | None]:
        """The values stored for the record, in order (None for a Delete)."""
        return [entry.value for entry in self.entries]


def run_transform(
    transform: TransformLike | Sequence[TransformLike],
    messages: Sequence[Any],
    *,
    topic: str = "topic",
    partition: int | Sequence[int] = 0,
    keys: Sequence[bytes | str | None] | None = None,
    headers: Headers | Sequence[Headers] | None = None,
    timestamp_ms: int = 0,
    batch: bool = False,
    concurrency: int = 16,
    settings: ResourceSettings | None = None,
) -> list[Outcome]:
    """One `Outcome` per message, in order, from a fresh event loop (see `arun_transform`)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("run_transform runs its own event loop: use `await arun_transform(...)`")

    async def main() -> list[Outcome]:
        try:
            return await arun_transform(
                transform,
                messages,
                topic=topic,
                partition=partition,
                keys=keys,
                headers=headers,
                timestamp_ms=timestamp_ms,
                batch=batch,
                concurrency=concurrency,
                settings=settings,
            )
        finally:
            await RESOURCES.aclose()

    return asyncio.run(main())


async def arun_transform(
    transform: TransformLike | Sequence[TransformLike],
    messages: Sequence[Any],
    *,
    topic: str = "topic",
    partition: int | Sequence[int] = 0,
    keys: Sequence[bytes | str | None] | None = None,
    headers: Headers | Sequence[Headers] | None = None,
    timestamp_ms: int = 0,
    batch: bool = False,
    concurrency: int = 16,
    settings: ResourceSettings | None = None,
) -> list[Outcome]:
    """One `Outcome` per message, in order, in the running event loop.

    `transform`: a registered name, a function (`batch=True` for a function written as a
    batch transform), or a list of them (a chain, as TRANSFORMS lists it). `partition`: one
    for every record, or one per record (offsets count from 0 in each). `keys`: one per
    record (str is encoded as UTF-8). `headers`: one set for every record, or one per
    record. `concurrency` is TRANSFORM_CONCURRENCY; `settings` the TRANSFORM_HTTP_* and
    TRANSFORM_CACHE_* values (defaults otherwise). The cache starts empty on every call.
    """
    chain = Chain(tuple(_step(item, batch) for item in _listed(transform)))
    RESOURCES.configure(settings or ResourceSettings())
    RESOURCES.cache.clear()
    records = _records(messages, topic, partition, keys, headers, timestamp_ms)
    decoded: list[Decoded] = [(i, records[i], message) for i, message in enumerate(messages)]
    outcomes = [Outcome(record, []) for record in records]
    where = {id(record): i for i, record in enumerate(records)}
    remaining = decoded
    while remaining:
        applied = await _apply(chain, remaining, concurrency)
        for entry in applied.entries:
            outcomes[where[id(entry.source)]].entries.append(entry)
        for index, _, error in applied.poison:
            outcomes[index] = outcomes[index]._replace(poison=error)
        if applied.stopped is None:
            break
        position, retry = applied.stopped
        index = remaining[position][0]
        outcomes[index] = outcomes[index]._replace(retry=retry)
        remaining = remaining[position + 1 :]
    return outcomes


async def _apply(chain: Chain, decoded: list[Decoded], concurrency: int) -> Applied:
    if chain.is_sync:
        return chain.apply_batch(decoded)
    return await apply_staged(chain, decoded, concurrency=concurrency)


def _listed(transform: TransformLike | Sequence[TransformLike]) -> list[TransformLike]:
    if isinstance(transform, str) or callable(transform):
        return [transform]
    return list(transform)


def _step(item: TransformLike, batch: bool) -> tuple[str, Transform]:
    if isinstance(item, str):
        fn: Any = TRANSFORMS.get(item)
        name = item
    else:
        fn = BatchTransform(item) if batch and not isinstance(item, BatchTransform) else item
        name = getattr(item, "__name__", type(item).__name__)
    wrong = misfit(fn)
    if wrong is not None:
        raise TypeError(f"transform {name!r}: {wrong}")
    return name, fn


def _records(
    messages: Sequence[Any],
    topic: str,
    partition: int | Sequence[int],
    keys: Sequence[bytes | str | None] | None,
    headers: Headers | Sequence[Headers] | None,
    timestamp_ms: int,
) -> list[Record]:
    count = len(messages)
    partitions = [partition] * count if isinstance(partition, int) else list(partition)
    key_list = [None] * count if keys is None else list(keys)
    if headers is None:
        header_list: list[Headers] = [()] * count
    elif headers and isinstance(headers[0][0], str):  # one set of headers for every record
        header_list = [cast(Headers, tuple(headers))] * count
    else:
        header_list = [cast(Headers, tuple(h)) for h in headers]
    for name, given in (("partition", partitions), ("keys", key_list), ("headers", header_list)):
        if len(given) != count:
            raise ValueError(f"{name}: {len(given)} given for {count} messages")
    offsets: dict[int, int] = {}
    records = []
    for i in range(count):
        p = partitions[i]
        offsets[p] = offsets.get(p, -1) + 1
        key = key_list[i]
        raw_key = key.encode() if isinstance(key, str) else key
        value = _raw(messages[i])
        records.append(Record(topic, p, offsets[p], raw_key, value, header_list[i], timestamp_ms))
    return records


def _raw(message: Any) -> bytes | None:
    """The record value a message would have been decoded from (pass-through chains)."""
    if isinstance(message, bytes):
        return message
    if isinstance(message, Message):
        return message.SerializeToString(deterministic=True)
    return None

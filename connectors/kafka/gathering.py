"""Batches as large as the backlog allows: records gathered from several fetches.

A fetch holds what one request brought for a partition; `getmany(max_records=N)` hands out
N of them and keeps the rest for the next poll, so a fetch of 6,000 records under a batch
size of 5,000 became a batch of 5,000 and one of 1,000: twice the writes and commits for
the same records. Here the records left after a batch are completed by the next fetch
instead, as long as the log holds more: a connector that is behind writes full batches; one
that is caught up returns what arrived, without waiting for a batch to fill.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka import errors as kafka_errors

from connectors.core.errors import FatalError

Fetched = dict[TopicPartition, list[Any]]


async def gather(
    consumer: AIOKafkaConsumer,
    fetched: Fetched,
    *,
    most: int,
    deadline: float,
    committed_only: bool,
    revoked: Callable[[], bool],
) -> Fetched:
    """`fetched` completed up to `most` records while a partition just fetched has more
    in its log, until `deadline` (`time.monotonic()`); empty when partitions were revoked
    meanwhile. `fetched` itself then holds every record taken, which the caller must give
    back (seek each partition still its own to the first of them): the new assignment's
    position may already be past them, and whoever owns a partition must read them again.
    That includes the fetch that showed the rebalance: it already holds the new
    assignment's records, possibly of a partition none of the others held."""
    count = sum(map(len, fetched.values()))
    while count < most and await behind(consumer, fetched, committed_only):
        left_ms = int((deadline - time.monotonic()) * 1000)
        if left_ms <= 0:
            break
        more: Fetched = await consumer.getmany(timeout_ms=left_ms, max_records=most - count)
        for tp, messages in more.items():  # taken, even when dropped below: given back
            fetched.setdefault(tp, []).extend(messages)
            count += len(messages)
        if revoked():
            return {}
        if not more:
            break
    return fetched


async def behind(consumer: AIOKafkaConsumer, fetched: Fetched, committed_only: bool) -> bool:
    """Whether the log of a partition in `fetched` holds records past the consumer's
    position (past its last stable offset when reading committed records only), as the
    last fetch response told: nothing is asked of the broker."""
    for tp, messages in fetched.items():
        try:
            end = consumer.last_stable_offset(tp) if committed_only else None
            if end is None or end < 0:
                end = consumer.highwater(tp)
            if end is not None and end > messages[-1].offset + 1:
                if end > int(await consumer.position(tp)):
                    return True
        except (AssertionError, kafka_errors.IllegalStateError):
            continue  # revoked meanwhile
    return False


async def give_back(consumer: AIOKafkaConsumer, fetched: Fetched) -> None:
    """Give back records that were taken and will not be handed on (a gathering cut short
    by a rebalance or a failed fetch, a topic whose id is not known yet): each partition
    still the consumer's goes back to the first of them, never forward. After a rebalance
    its position may already be back at the commit, at or before them; or the new
    assignment's position may have moved past them, and without this the next poll would
    start after them and their offsets be committed unread."""
    for tp, messages in fetched.items():
        if not messages:
            continue
        # the lowest: records of the old assignment may come before the new one's
        first = min(m.offset for m in messages)
        try:
            if int(await consumer.position(tp)) > first:
                consumer.seek(tp, first)
        except kafka_errors.IllegalStateError:
            continue  # revoked meanwhile: its new owner starts from the commit
        except kafka_errors.KafkaError as exc:
            raise FatalError(
                f"kafka: could not give back {len(messages)} records of {tp.topic}"
                f"[{tp.partition}] from offset {first} ({exc}); stopping, so that they are "
                "read again at restart rather than skipped"
            ) from exc

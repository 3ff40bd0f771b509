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
    meanwhile (positions go back to the commits: whoever owns them reads them again)."""
    count = sum(map(len, fetched.values()))
    while count < most and await behind(consumer, fetched, committed_only):
        left_ms = int((deadline - time.monotonic()) * 1000)
        if left_ms <= 0:
            break
        more: Fetched = await consumer.getmany(timeout_ms=left_ms, max_records=most - count)
        if revoked():
            return {}
        for tp, messages in more.items():
            fetched.setdefault(tp, []).extend(messages)
            count += len(messages)
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

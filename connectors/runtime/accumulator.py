"""Batches held back until a writer's flush policy says "write now".

Most writers have no policy: every Kafka batch is written as it comes. A writer of large
objects (S3) asks for up to `max_bytes` or `max_interval_s`; the records are kept here,
uncommitted, until then. Memory is bounded by the policy itself.
"""

from __future__ import annotations

import time

from connectors.core.records import Batch
from connectors.core.writer import FlushPolicy


class Accumulator:
    def __init__(self, policy: FlushPolicy | None) -> None:
        self._policy = policy
        self._batches: list[Batch] = []
        self._records = 0
        self._bytes = 0
        self._since: float | None = None

    def add(self, batch: Batch) -> None:
        if not batch.records:
            return
        if self._since is None:
            self._since = time.monotonic()
        self._batches.append(batch)
        self._records += len(batch.records)
        if self._policy is not None:  # only a policy counts bytes: no walk per record else
            self._bytes += sum(len(r.value or b"") + len(r.key or b"") for r in batch.records)

    def due(self) -> bool:
        if not self._records:
            return False
        policy = self._policy
        if policy is None:
            return True
        return (
            self._bytes >= policy.max_bytes
            or self._records >= policy.max_records
            or (self._since is not None and time.monotonic() - self._since >= policy.max_interval_s)
        )

    def take(self) -> Batch:
        """What was added, as one batch. A batch taken alone (every batch, for a writer
        with no policy) is handed on as the reader made it, offsets already walked."""
        batches = self._batches
        self._batches, self._records, self._bytes, self._since = [], 0, 0, None
        if len(batches) == 1:
            return batches[0]
        topic_ids: dict[str, str] = {}
        for batch in batches:
            topic_ids.update(batch.topic_ids)
        return Batch([r for batch in batches for r in batch.records], topic_ids)

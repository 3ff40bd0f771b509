"""A writer that commits the consumed offsets itself (exactly-once to Kafka): the runner
hands it the offsets where it would commit through the reader, never commits them through
the reader too, and tells it which partitions a rebalance took away."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from connectors import RetriableError
from connectors.core.records import TopicPartition
from connectors.core.writer import offset_committer
from connectors.testing.fakes import MemoryReader, MemoryWriter
from tests.unit.test_runner import make_runner, pipeline, records


class Committing(MemoryWriter):
    def __init__(self, *, enabled: bool = True, failures: int = 0) -> None:
        super().__init__()
        self.commits_offsets = enabled
        self.commits: list[dict[TopicPartition, int]] = []
        self.forgotten: list[list[TopicPartition]] = []
        self.aborts = failures

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if self.aborts:
            self.aborts -= 1
            raise RetriableError("transaction aborted")
        self.commits.append(dict(offsets))

    async def revoked(self, partitions: Sequence[TopicPartition]) -> None:
        self.forgotten.append(list(partitions))


async def test_the_writer_commits_and_the_reader_never_does() -> None:
    reader = MemoryReader([records(0, 0, 5), records(1, 0, 3)])
    writer = Committing(failures=2)  # retried like the reader's commit
    await asyncio.wait_for(make_runner(pipeline(), reader, writer).run(), 10)
    assert writer.commits == [{("raw", 0): 5}, {("raw", 1): 3}]
    assert reader.commits == []
    assert len(writer.store) == 8


async def test_a_writer_that_declares_false_is_committed_through_the_reader() -> None:
    reader, writer = MemoryReader([records(0, 0, 4)]), Committing(enabled=False)
    assert offset_committer(writer) is None
    await asyncio.wait_for(make_runner(pipeline(), reader, writer).run(), 10)
    assert writer.commits == [] and reader.commits == [{("raw", 0): 4}]


async def test_revoked_partitions_are_forgotten_after_the_batch_in_flight() -> None:
    reader = MemoryReader([records(0, 0, 2), records(0, 2, 2)], revoke_after=1)
    writer = Committing()
    await asyncio.wait_for(make_runner(pipeline(), reader, writer).run(), 10)
    assert writer.forgotten == reader.revoked != []
    assert writer.commits[0] == {("raw", 0): 2}

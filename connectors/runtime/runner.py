"""The loop: read a batch, decode, transform, write, and only then commit.

Everything that could lose data is decided here, once, for every reader and writer:

- offsets are committed only for records whose entries the writer stored; a writer's
  last step that needs no Python (LMDB's commit, `StagesWrites`) runs while the next
  batch is read and transformed, and is awaited before any offset of its batch;
- a retriable failure (at start too, or raised by a transform) retries with capped,
  jittered backoff and commits nothing meanwhile; a fatal one stops the loop with nothing committed;
- a record that cannot be decoded, transformed or stored is poison: dead-lettered with its
  provenance, the rest of its batch written; running out of memory or file descriptors is
  no record's fault and stops the loop with nothing committed past it;
- a rebalance waits for the batch in flight (write and commit) before partitions go;
- a stop request (SIGTERM) lets the batch in flight finish within the grace period, then
  leaves the group; a batch that cannot finish in time is abandoned, not committed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from functools import partial

from prometheus_client import Histogram

from connectors.config.pipeline import Pipeline
from connectors.core.dead_letters import DeadLetter, DeadLetterSink
from connectors.core.errors import FatalError, RetriableError
from connectors.core.reader import Reader, ReaderContext
from connectors.core.records import Batch, Entry, Record, TopicPartition, WriteBatch
from connectors.core.writer import (
    Writer,
    WriterContext,
    flush_policy,
    offset_committer,
    stores_bytes,
)
from connectors.kafka.dead_letters import KafkaDeadLetters
from connectors.observability import tracing
from connectors.observability.health.recent import Recent
from connectors.observability.logs import Progress
from connectors.runtime import lifecycle
from connectors.runtime.accumulator import Accumulator
from connectors.runtime.catch_up import CatchUp
from connectors.runtime.decoding import DECODE_SLICE, Poison, slicer
from connectors.runtime.instruments import Instruments
from connectors.runtime.poison import Judge
from connectors.runtime.retry import Abandoned, Retrier, Waiting
from connectors.runtime.transforming import TransformStage
from connectors.runtime.writing import WriteStage, Written

_log = logging.getLogger("connectors.runtime.runner")


class Runner:
    def __init__(
        self,
        pipeline: Pipeline,
        *,
        until_caught_up: bool = False,
        report: Callable[[str], None] | None = None,
        reader: Reader | None = None,
        writer: Writer | None = None,
        dead_letters: DeadLetterSink | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.pipeline = pipeline
        runtime = pipeline.runtime
        self.reader: Reader = reader or pipeline.reader.build(
            pipeline.reader_settings,
            ReaderContext(
                connector_name=runtime.connector_name,
                topics=runtime.topics,
                batch_max_messages=runtime.batch_max_messages,
                batch_max_wait_ms=runtime.batch_max_wait_ms,
            ),
        )
        self.writer: Writer = writer or pipeline.writer.build(
            pipeline.writer_settings,
            WriterContext(connector_name=runtime.connector_name, group_id=pipeline.group_id),
        )
        self.dead_letters: DeadLetterSink = dead_letters or KafkaDeadLetters(
            pipeline.kafka,
            pipeline.dlq_topic,
            runtime.connector_name,
            pipeline.dead_letter,
            required=runtime.on_error == "dlq",
        )
        self._name = runtime.connector_name
        self._instruments = Instruments(
            runtime.connector_name,
            pipeline.writer.name,
            topics=runtime.topics,
            transforms=pipeline.chain.names,
        )
        self._stopping = asyncio.Event()
        self._retry = Retrier(pipeline.retry, self.reader, self._instruments, self._stopping)
        chain = pipeline.chain.storing_bytes() if stores_bytes(self.writer) else pipeline.chain
        self._decode_slice = slicer(pipeline.schemas)  # the topics' types are fixed
        #: raw topics and no transform: each record's entry is built from it directly
        self._passes_raw = pipeline.schemas.all_raw and not chain.steps
        self._transforms = TransformStage(
            chain, pipeline.transform, self._retry, runtime.connector_name
        )
        self._judge = Judge(runtime.on_error, pipeline.dead_letter, self._instruments)
        self._catch_up = CatchUp(self.reader, report) if until_caught_up else None
        self._pending = Accumulator(flush_policy(self.writer))
        self._committer = offset_committer(self.writer)
        self._writing = WriteStage(self.writer, self._retry, self._judge, self._instruments)
        self._unsettled: Written | None = None
        self._in_flight = asyncio.Lock()
        self._progress = progress or Progress(runtime.connector_name, 0)
        self._activity: tuple[str | None, float] = (None, time.monotonic())
        self.recent = Recent()  # records/s and the last dead letters, for the status page

    def stop(self) -> None:
        """Ask the loop to finish the batch in flight and leave; call it on the loop."""
        self._stopping.set()

    async def stop_requested(self) -> None:
        """Returns once `stop()` was called."""
        await self._stopping.wait()

    def activity(self) -> tuple[str | None, float]:
        """The stage running now (decode, transform, write, dead_letter, commit; None when
        idle or polling) and the `time.monotonic()` it began: a stage that began long ago
        is a wedged pipeline. Safe to read from any thread."""
        return self._activity

    def blocked(self) -> Waiting | None:
        """The call waiting on a dependency now (the writer, a transform's lookup, the
        broker) and why, None when none is: waiting is not wedged, and a restart would not
        help it. Safe to read from any thread."""
        return self._retry.waiting

    async def run(self) -> None:
        """Start, loop until stopped (or caught up), close; a stop request during a retry
        wait, at start too, ends it normally."""
        retry = self._retry
        self._transforms.start()
        with lifecycle.running(self._instruments, self._stopping, self._caught_up):
            try:
                try:
                    await retry("writer.start", self.writer.start, keepalive=False)
                    await retry("dead_letters.start", self.dead_letters.start, keepalive=False)
                    start = partial(self.reader.start, self._on_revoke)
                    await retry("reader.start", start, keepalive=False)
                    lifecycle.started(self.pipeline)
                    try:
                        await self._loop()
                    finally:
                        await self.reader.close()
                finally:
                    await self.dead_letters.close()
                    await self.writer.close()
                    await self._transforms.close()
            except Abandoned as stopped:
                _log.info("stopped while %s was retried; nothing of it committed", stopped)

    def _caught_up(self) -> bool:
        return self._catch_up is not None

    async def _on_revoke(self, partitions: list[TopicPartition]) -> None:
        # Holding the lock means no batch is between write and commit; what was accumulated
        # for a large object is written and committed before the partitions go.
        async with self._in_flight:
            if partitions:
                _log.info("partitions revoked: %s", partitions)
            await self._flush()
            await self._settle()
            if self._committer is not None:
                await self._committer.revoked(partitions)

    async def _loop(self) -> None:
        poll_seconds = self._instruments.poll_seconds
        while not self._stopping.is_set():
            started = time.perf_counter()
            async with self._settled_if_failing(locking=True):
                batch = await self._retry("poll", self.reader.batch, keepalive=False)
            elapsed = time.perf_counter() - started
            poll_seconds.observe(elapsed)
            tracing.poll(self._name, batch, elapsed)
            if self._catch_up is not None:
                self._catch_up.note(batch)
            async with self._in_flight:
                self._pending.add(batch)
                if self._pending.due():
                    await self._flush()
                elif not batch.records:
                    await self._settle()  # nothing came to overlap its store commit with
            del batch  # written: its records must not live on through the next poll
            self._progress.tick()
            if self._catch_up is not None and await self._catch_up.done():
                break
        async with self._in_flight:
            await self._flush()
            await self._settle()

    async def _flush(self) -> None:
        batch = self._pending.take()
        if batch.records:
            with tracing.batch(self._name, batch) as trace:
                try:
                    await self._write_and_commit(batch, trace)
                finally:
                    self._activity = (None, time.monotonic())

    async def _write_and_commit(self, batch: Batch, trace: tracing.BatchTrace) -> None:
        """Transform, write what came out, dead-letter what could not, then commit.

        With a writer that stages its writes (LMDB), the commit of this batch waits for
        the next one: the writer's last step (LMDB's commit: pages written and fsynced)
        runs while the next batch is read and transformed, and `_settle` awaits it before
        anything more is written or any offset committed. Offsets still follow the write."""
        meter = self._instruments
        meter.read(batch)
        async with self._settled_if_failing(locking=False):  # _flush holds the lock
            write_batch, letters = await self._transform(batch, trace)
        await self._settle()  # the batch before: its store commit ran during this transform
        started = time.perf_counter()
        with self._stage("write", trace):
            written, durable = await self._writing.write(trace.carry(write_batch), letters)
        del write_batch
        meter.aged(batch)
        done = Written(
            durable,
            batch.next_offsets,
            len(batch),
            written,
            letters,
            trace,
            time.perf_counter() - started,
        )
        if durable is None:
            await self._commit(done)
        else:
            self._unsettled = done

    async def _settle(self) -> None:
        """Wait for the staged batch's last write step, then dead-letter and commit it. A
        step that failed stored nothing of its batch, whose records are no longer held:
        the loop stops with nothing of it committed, and the restart reads it again."""
        unsettled, self._unsettled = self._unsettled, None
        if unsettled is None:
            return
        if unsettled.durable is not None:
            started = time.perf_counter()
            self._activity = ("write", time.monotonic())
            try:
                await unsettled.durable
            except RetriableError as exc:
                raise FatalError(
                    f"the writer's commit failed after its batch was staged, so nothing of "
                    f"the batch was stored or committed; it is read again at restart: {exc}"
                ) from exc
            unsettled.write_s += time.perf_counter() - started
        await self._commit(unsettled)

    @asynccontextmanager
    async def _settled_if_failing(self, *, locking: bool) -> AsyncIterator[None]:
        """A poll or transform that fails (the run stops, a batch is abandoned) first lets
        the batch before, already written, be committed: it is not read again. `locking`
        when the caller does not hold `_in_flight` already."""
        try:
            yield
        except BaseException:
            try:
                if locking:
                    async with self._in_flight:
                        await self._settle()
                else:
                    await self._settle()
            except (FatalError, RetriableError, Abandoned, OSError) as exc:
                # the failure that stops the run is the one to raise
                _log.warning("the batch before could not be committed: %s", exc)
            raise

    async def _commit(self, done: Written) -> None:
        """Dead-letter what a batch could not store, then commit its offsets."""
        meter, trace = self._instruments, done.trace
        meter.write_seconds.observe(done.write_s, trace.exemplar())
        meter.entries_written.inc(done.written)
        if done.letters:
            with self._stage("dead_letter", trace):
                await self._dead_letter(done.letters, trace)
        offsets = done.offsets
        commit = self.reader.commit if self._committer is None else self._committer.commit
        try:
            with self._stage("commit", trace, meter.commit_seconds):
                await self._retry("commit", partial(commit, offsets), keepalive=True)
        finally:
            self._activity = (None, time.monotonic())
        meter.committed(offsets, done.records)
        self._progress.count(done.records)
        self.recent.processed(done.records)

    @contextmanager
    def _stage(
        self, name: str, trace: tracing.BatchTrace, seconds: Histogram | None = None
    ) -> Iterator[None]:
        """One stage of the batch in flight: shown by `activity()`, traced, and timed into
        `seconds` once it succeeded."""
        self._activity = (name, time.monotonic())
        started = time.perf_counter()
        with trace.stage(name):
            yield
        if seconds is not None:
            seconds.observe(time.perf_counter() - started, trace.exemplar())

    async def _dead_letter(self, letters: list[DeadLetter], trace: tracing.BatchTrace) -> None:
        if trace.active:
            letters = [
                DeadLetter(trace.carry_record(d.record), d.stage, d.error_class, d.message)
                for d in letters
            ]
        await self._retry("dead_letter", partial(self.dead_letters.send, letters), keepalive=True)
        for letter in letters:
            self._instruments.dead_lettered(letter.record.topic, letter.stage)
        self.recent.dead_lettered(letters)

    async def _transform(
        self, batch: Batch, trace: tracing.BatchTrace
    ) -> tuple[WriteBatch, list[DeadLetter]]:
        """The batch's entries and dead letters; poison is judged after all, in record
        order. Raw topics through no transform (`_passes_raw`) have nothing to decode or
        apply and no record that can be poison: the entries are built in one pass."""
        records = batch.records
        poison: list[Poison] = []
        seconds: dict[str, float] = {}
        if self._passes_raw:
            self._activity = ("transform", time.monotonic())
            started = time.perf_counter()
            entries = self._transforms.chain.passed(records)
            decode_s, transform_s = 0.0, time.perf_counter() - started
        else:
            entries, decode_s, transform_s = await self._sliced(records, poison, seconds, trace)
        if poison:
            poison.sort(key=lambda found: found[0])
        letters = self._judge.letters(len(records), poison)
        self._instruments.transformed(decode_s, transform_s, seconds, trace.exemplar())
        trace.summed(("decode", decode_s), ("transform", transform_s))
        return WriteBatch(batch, tuple(entries)), letters

    async def _sliced(
        self,
        records: Sequence[Record],
        poison: list[Poison],
        seconds: dict[str, float],
        trace: tracing.BatchTrace,
    ) -> tuple[list[Entry], float, float]:
        """Decode, then transform, a slice of the batch at a time: two passes per slice,
        each timed once, so no clock is read per record (the transform time includes any
        retry waits). Adds to `poison` and to each transform's `seconds`; returns the
        entries, the decode seconds and the transform seconds.

        With sync transforms a slice is `DECODE_SLICE` records, so only that many decoded
        messages are alive at once (a whole batch's upb messages cost 2-3 KB each, 40-60 MB
        at 20,000); async and batch transforms get the whole batch, since how much of it
        can be in flight at once is what makes them fast."""
        step = DECODE_SLICE if self._transforms.chain.is_sync else max(len(records), 1)
        entries: list[Entry] = []
        decode_s = transform_s = 0.0
        for start in range(0, len(records), step):
            self._activity = ("decode", time.monotonic())
            started = time.perf_counter()
            decoded, bad = self._decode_slice(records[start : start + step], start)
            decoded_at = time.perf_counter()
            self._activity = ("transform", time.monotonic())
            applied = await self._transforms.apply(decoded, trace)
            del decoded
            transform_s += time.perf_counter() - decoded_at
            decode_s += decoded_at - started
            entries.extend(applied.entries)
            poison.extend(bad)
            poison.extend(applied.poison)
            for name, spent in applied.seconds.items():
                seconds[name] = seconds.get(name, 0.0) + spent
        return entries, decode_s, transform_s

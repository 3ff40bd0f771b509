"""The loop: read a batch, decode, transform, write, and only then commit.

Everything that could lose data is decided here, once, for every reader and writer:

- offsets are committed only for records whose entries the writer stored;
- a retriable failure retries the same batch with capped, jittered backoff and commits
  nothing meanwhile; a fatal one stops the loop with nothing committed;
- a rebalance waits for the batch in flight (write and commit) before partitions go;
- a stop request (SIGTERM) lets the batch in flight finish within the grace period, then
  leaves the group.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

from connectors.config.pipeline import Pipeline
from connectors.core.dead_letters import DeadLetter, DeadLetterSink
from connectors.core.errors import FatalError, PoisonError, RetriableError
from connectors.core.reader import Reader, ReaderContext
from connectors.core.records import Batch, Entry, Record, TopicPartition, WriteBatch
from connectors.core.writer import Writer, WriterContext, flush_policy
from connectors.kafka.dead_letters import KafkaDeadLetters
from connectors.observability import metrics, tracing
from connectors.observability.logs import Progress
from connectors.runtime.accumulator import Accumulator
from connectors.runtime.catch_up import CatchUp
from connectors.runtime.poison import Breaker

_log = logging.getLogger("connectors.runtime.runner")

T = TypeVar("T")


def _position(record: Record) -> tuple[str, int, int]:
    return (record.topic, record.partition, record.offset)


class _Abandoned(Exception):  # noqa: N818 - control flow, never escapes this module
    """A stop request arrived while a batch waited for a retry; it is not committed."""


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
            pipeline.writer_settings, WriterContext(connector_name=runtime.connector_name)
        )
        self.dead_letters: DeadLetterSink = dead_letters or KafkaDeadLetters(
            pipeline.kafka, pipeline.dlq_topic, runtime.connector_name
        )
        self._breaker = Breaker(pipeline.dead_letter.max_ratio, pipeline.dead_letter.window)
        self._catch_up = CatchUp(self.reader, report) if until_caught_up else None
        self._pending = Accumulator(flush_policy(self.writer))
        self._in_flight = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._name = runtime.connector_name
        self._progress = progress or Progress(runtime.connector_name, 0)
        self.committed: dict[TopicPartition, int] = {}

    def stop(self) -> None:
        """Ask the loop to finish the batch in flight and leave; safe from a signal handler."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def _on_revoke(self, partitions: list[TopicPartition]) -> None:
        # Holding the lock means no batch is between write and commit; what was accumulated
        # for a large object is written and committed before the partitions go.
        async with self._in_flight:
            _log.info("partitions revoked: %s", partitions)
            await self._flush()

    async def run(self) -> None:
        await self.writer.start()
        try:
            await self.dead_letters.start()
            await self.reader.start(self._on_revoke)
            try:
                await self._loop()
            finally:
                await self.reader.close()
        finally:
            await self.dead_letters.close()
            await self.writer.close()

    async def _loop(self) -> None:
        stage = metrics.STAGE_SECONDS
        try:
            while not self._stopping.is_set():
                started = time.perf_counter()
                batch = await self._retrying("poll", self.reader.batch)
                elapsed = time.perf_counter() - started
                stage.labels(self._name, "poll").observe(elapsed)
                tracing.poll(self._name, batch, elapsed)
                if self._catch_up is not None:
                    self._catch_up.note(batch)
                async with self._in_flight:
                    self._pending.add(batch)
                    if self._pending.due():
                        await self._flush()
                self._progress.tick()
                if self._catch_up is not None and await self._catch_up.done():
                    break
            async with self._in_flight:
                await self._flush()
        except _Abandoned:
            return

    async def _flush(self) -> None:
        batch = self._pending.take()
        if batch.records:
            await self._process(batch)

    async def _process(self, batch: Batch) -> None:
        """Write, dead-letter, then commit one batch; raises _Abandoned on a stop request."""
        with tracing.batch(self._name, batch) as trace:
            await self._write_and_commit(batch, trace)

    async def _write_and_commit(self, batch: Batch, trace: tracing.BatchTrace) -> None:
        name = self._name
        metrics.BATCH_SIZE.labels(name).observe(len(batch))
        per_topic: dict[str, int] = {}
        for record in batch.records:
            per_topic[record.topic] = per_topic.get(record.topic, 0) + 1
        for topic, count in per_topic.items():
            metrics.RECORDS_IN.labels(name, topic).inc(count)
        write_batch, letters = self._transform(batch, trace)
        write_batch = trace.carry(write_batch)

        in_flight = metrics.WRITER_IN_FLIGHT.labels(name, self.pipeline.writer.name)
        in_flight.set(len(write_batch.entries))
        started = time.perf_counter()
        try:
            with trace.stage("write"):
                write_batch = await self._write(write_batch, letters)
        finally:
            in_flight.set(0)
        metrics.STAGE_SECONDS.labels(name, "write").observe(
            time.perf_counter() - started, trace.exemplar()
        )
        metrics.ENTRIES_WRITTEN.labels(name, self.pipeline.writer.name).inc(
            len(write_batch.entries)
        )
        self._observe_age(batch)
        if letters:
            if trace.active:
                letters = [
                    DeadLetter(trace.carry_record(d.record), d.stage, d.error_class, d.message)
                    for d in letters
                ]
            sent = letters
            with trace.stage("dead_letter"):
                await self._retrying("dead_letter", lambda: self.dead_letters.send(sent))
            for letter in letters:
                metrics.RECORDS_DEAD_LETTERED.labels(name, letter.record.topic, letter.stage).inc()

        offsets = batch.next_offsets
        started = time.perf_counter()
        with trace.stage("commit"):
            await self._retrying("commit", lambda: self.reader.commit(offsets))
        metrics.STAGE_SECONDS.labels(name, "commit").observe(
            time.perf_counter() - started, trace.exemplar()
        )
        metrics.COMMITS.labels(name).inc()
        now = time.time()
        for topic, partition in offsets:
            metrics.LAST_COMMIT_TIME.labels(name, topic, str(partition)).set(now)
        self.committed.update(offsets)
        self._progress.count(len(batch))

    def _observe_age(self, batch: Batch) -> None:
        """How late the batch was written: the age of each partition's first record (records
        of a partition come together; one observation per record would cost more than every
        other metric of the batch)."""
        now_ms = time.time() * 1000.0
        topic, partition = "", -1
        for record in batch.records:
            if record.partition != partition or record.topic != topic:
                topic, partition = record.topic, record.partition
                if record.timestamp_ms > 0:
                    age_s = max(0.0, (now_ms - record.timestamp_ms) / 1000.0)
                    metrics.RECORD_AGE.labels(self._name, topic).observe(age_s)

    async def _write(self, write_batch: WriteBatch, letters: list[DeadLetter]) -> WriteBatch:
        """Write until it succeeds; records the writer rejects for good become dead letters
        and the rest is written again without them."""
        while True:
            try:
                await self._retrying("write", partial(self.writer.write, write_batch))
            except PoisonError as exc:
                if exc.record is None:
                    raise FatalError(
                        f"writer rejected a batch without naming a record: {exc}"
                    ) from exc
                rejected = _position(exc.record)
                letters.append(self._poison(exc.record, exc))
                write_batch = WriteBatch(
                    write_batch.batch,
                    tuple(e for e in write_batch.entries if _position(e.source) != rejected),
                )
                continue
            return write_batch

    def _transform(
        self, batch: Batch, trace: tracing.BatchTrace
    ) -> tuple[WriteBatch, list[DeadLetter]]:
        """Decode every record, then transform every message: two passes, each timed once,
        so no clock is read per record. Poison is judged after both, in record order, and
        healthy records reach the breaker as counts of the runs between poison ones."""
        schemas, chain, name = self.pipeline.schemas, self.pipeline.chain, self._name
        records = batch.records
        poison: list[tuple[int, Record, PoisonError]] = []

        started = time.perf_counter()
        decode = schemas.decode
        decoded: list[tuple[int, Record, Any]] = []
        for index, record in enumerate(records):
            try:
                decoded.append((index, record, decode(record)))
            except PoisonError as exc:
                poison.append((index, record, exc))
        decoded_at = time.perf_counter()

        apply = chain.apply
        entries: list[Entry] = []
        failed_decode = len(poison)
        for index, record, message in decoded:
            try:
                entries.extend(apply(record, message))
            except PoisonError as exc:
                poison.append((index, record, exc))
        decode_s = decoded_at - started
        transform_s = time.perf_counter() - decoded_at

        if failed_decode and len(poison) > failed_decode:
            poison.sort(key=lambda found: found[0])
        breaker = self._breaker
        letters: list[DeadLetter] = []
        judged = 0
        for index, record, error in poison:
            breaker.record_ok(index - judged)
            judged = index + 1
            letters.append(self._poison(record, error))
        breaker.record_ok(len(records) - judged)
        exemplar = trace.exemplar()
        metrics.STAGE_SECONDS.labels(name, "decode").observe(decode_s, exemplar)
        metrics.STAGE_SECONDS.labels(name, "transform").observe(transform_s, exemplar)
        if chain.seconds:
            for step, seconds in chain.seconds.items():
                metrics.STAGE_SECONDS.labels(name, f"transform:{step}").observe(seconds, exemplar)
            chain.seconds.clear()
        trace.summed(("decode", decode_s), ("transform", transform_s))
        return WriteBatch(batch, tuple(entries)), letters

    def _poison(self, record: Record, exc: PoisonError) -> DeadLetter:
        """A dead letter for `record`, unless poison must stop the connector."""
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        metrics.RECORDS_FAILED.labels(self._name, exc.stage).inc()
        if self.pipeline.runtime.on_error == "fail":
            raise FatalError(
                f"{exc.stage} failed for {where}: {exc}; ON_ERROR=fail, nothing committed past it"
            ) from exc
        self._breaker.record(True)
        if self._breaker.tripped:
            settings = self.pipeline.dead_letter
            raise FatalError(
                f"more than {settings.max_ratio:.0%} of the last {settings.window} records are "
                f"poison (last: {exc.stage} at {where}: {exc}); stopping instead of "
                f"dead-lettering the topic, nothing committed past it"
            ) from exc
        _log.warning("dead-lettering %s (%s): %s", where, exc.stage, exc)
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        return DeadLetter(record, exc.stage, type(cause).__name__, str(exc))

    async def _retrying(self, stage: str, call: Callable[[], Awaitable[T]]) -> T:
        """`call()` until it succeeds; raises _Abandoned when a stop request ends the wait.

        While waiting, the reader is paused but keeps polling, so the group sees a live
        member (no rebalance) and nothing new is fetched into memory.
        """
        retry = self.pipeline.retry
        attempt = 0
        while True:
            try:
                result = await call()
            except RetriableError as exc:
                attempt += 1
                if retry.max_attempts and attempt >= retry.max_attempts:
                    raise FatalError(
                        f"{stage} still failing after {attempt} attempts: {exc}"
                    ) from exc
                delay = retry.delay_s(attempt, random.random())  # noqa: S311 - jitter
                if exc.retry_after is not None:
                    delay = max(delay, exc.retry_after)
                metrics.RETRIES.labels(self._name, stage).inc()
                _log.warning(
                    "%s failed (attempt %d), retrying in %.2fs: %s", stage, attempt, delay, exc
                )
                if await self._wait_for_stop(delay, keep_polling=stage != "poll"):
                    raise _Abandoned from exc
            else:
                if attempt and stage != "poll":
                    self.reader.resume()
                    metrics.PAUSED_PARTITIONS.labels(self._name).set(0)
                return result

    async def _wait_for_stop(self, seconds: float, keep_polling: bool = False) -> bool:
        """Wait `seconds` or until a stop request (True); poll paused meanwhile if asked."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            if self._stopping.is_set():
                return True
            if keep_polling:
                paused = len(self.reader.assignment())
                metrics.PAUSED_PARTITIONS.labels(self._name).set(paused)
                await self.reader.keepalive(min(remaining, 0.5))
            else:
                try:
                    await asyncio.wait_for(self._stopping.wait(), timeout=remaining)
                except TimeoutError:
                    return False
        return self._stopping.is_set()


async def run_until_stopped(runner: Runner, grace_s: float) -> Any:
    """Run; once `runner.stop()` was called, allow `grace_s` for the batch in flight."""
    task = asyncio.ensure_future(runner.run())
    stop_wait = asyncio.ensure_future(runner._stopping.wait())
    done, _ = await asyncio.wait({task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
    if task not in done:
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=grace_s)
        except TimeoutError:
            _log.warning("batch in flight abandoned after %.1fs; it will be replayed", grace_s)
            task.cancel()
    stop_wait.cancel()
    return await task

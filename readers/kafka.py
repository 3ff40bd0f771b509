"""The Kafka reader: one aiokafka consumer in a group, batched fetches, manual commits.

Auto-commit is off: the runner commits explicit offsets after the writer succeeded. The
rebalance listener awaits the runner's `on_revoke` before partitions are given away, so a
batch in flight is written and committed by its owner and never half-committed by nobody.

What it reads: committed records only (`KAFKA_ISOLATION_LEVEL=read_committed` by default,
so records of aborted transactions never reach a writer), from topics that exist. A topic
of `TOPICS` that does not exist is never created by the reader: it logs a WARNING naming
`TOPICS` and the topic (again every minute), reads the other topics meanwhile, and joins
the topic once someone created it, as a Kafka Connect sink task waits for its topics.

Each batch carries the topic id (Kafka's incarnation of the name) of every topic in it, asked
on each assignment and after each offset reset, so a topic deleted and created again is
never mistaken for the old one. A position no longer in the log (records deleted by
retention or `kafka-delete-records`) is reset by `KAFKA_AUTO_OFFSET_RESET` with a WARNING
naming the partition and both positions, counted in `connector_offset_resets_total`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka import errors as kafka_errors

from connectors import (
    Batch,
    ConnectorError,
    KafkaSettings,
    OnRevoke,
    ReaderContext,
    ReaderPlugin,
    RetriableError,
    metrics,
)
from connectors import TopicPartition as TP
from connectors.kafka import (
    AS_RECORD,
    RESETS,
    LenientHeaders,
    Where,
    client_options,
    describe_topics,
    diagnose,
    fetch_options,
    gather,
    give_back,
    is_raw,
    partition_fetch_bytes,
    set_partition_fetch_bytes,
    stop_consumer,
    translate,
)
from readers.rebalance import Listener

_log = logging.getLogger("connectors.readers.kafka")

#: With BATCH_MAX_WAIT_MS=0 and nothing fetched yet, how long a poll waits for records:
#: aiokafka answers a zero wait without ever yielding to the event loop, so its fetcher,
#: the heartbeats and the signal handlers would never run.
_IDLE_WAIT_MS = 100
#: How often a topic of TOPICS that does not exist is looked for, and warned about, again.
_MISSING_CHECK_S = 5.0
_MISSING_WARNING_S = 60.0


class KafkaReader:
    def __init__(self, settings: KafkaSettings, context: ReaderContext) -> None:
        self._settings = settings
        self._context = context
        self._consumer: AIOKafkaConsumer | None = None
        self._group = settings.group_id or context.connector_name
        self._where = Where("kafka", settings, "READ", context.topics, self._group)
        self._ids: dict[str, str] = {}
        self._skipped: dict[TP, tuple[int, int]] = {}
        self._listener: Listener | None = None
        self._subscribed: set[str] = set()
        self._missing: set[str] = set()
        self._next_missing_check = 0.0
        self._next_missing_warning = time.monotonic() + _MISSING_WARNING_S
        self._lenient_seen = LenientHeaders.lenient

    @property
    def consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("reader not started")
        return self._consumer

    async def start(self, on_revoke: OnRevoke) -> None:
        s = self._settings
        consumer = self._consumer = AIOKafkaConsumer(
            **client_options(s),
            group_id=self._group,
            group_instance_id=s.group_instance_id,
            client_id=s.client_id or self._context.connector_name,
            enable_auto_commit=False,
            auto_offset_reset=s.auto_offset_reset,
            isolation_level=s.isolation_level,
            session_timeout_ms=s.session_timeout_ms,
            max_poll_interval_ms=s.max_poll_interval_ms,
            **fetch_options(s),
            max_poll_records=self._context.batch_max_messages,
            value_deserializer=AS_RECORD,  # fetched as `Record`s, not aiokafka's records
        )
        self._listener = Listener(
            on_revoke, self._on_assign, self._context.connector_name, self._still_member
        )
        try:
            await consumer._client.bootstrap()  # noqa: SLF001 - to look for TOPICS first
            await self._subscribe_existing(warn=True)
            await consumer.start()
        except kafka_errors.KafkaConnectionError as exc:
            await consumer.stop()
            raise await diagnose(exc, s) from exc
        except kafka_errors.KafkaError as exc:
            await consumer.stop()
            raise self._as_ours(exc) from exc
        except BaseException:
            await consumer.stop()
            raise

    async def _subscribe_existing(self, *, warn: bool) -> None:
        """Subscribe to the topics of TOPICS that exist; warn about the others.

        aiokafka would wait for a missing topic at start (40 s, then an error) and log an
        ERROR for it ten times a second; a topic not subscribed to is only looked for again
        every `_MISSING_CHECK_S`.
        """
        wanted = set(self._context.topics)
        described = await self._describe(wanted)
        for name, state in sorted(described.items()):
            if state.error is not None and not state.missing:
                raise self._as_ours(state.error(name))  # not authorized, invalid name, ...
        missing = {name for name, state in described.items() if state.missing}
        if warn:
            for name in sorted(missing):
                _log.warning(
                    "TOPICS names %r, which does not exist: waiting for it to be created "
                    "(a connector never creates the topics it reads; the other topics are "
                    "read meanwhile)",
                    name,
                )
        present = wanted - missing
        if present != self._subscribed:
            if self._subscribed:
                _log.info("topics %s exist now: reading them", sorted(present - self._subscribed))
            self.consumer.subscribe(sorted(present), listener=self._listener)
            self._subscribed = present
        self._missing = missing

    def _still_member(self) -> bool:
        """False once the group coordinator reset this member's generation (session
        timeout, poll interval exceeded, fenced): what it revokes then was already taken."""
        coordinator = getattr(self._consumer, "_coordinator", None)
        return getattr(coordinator, "generation", 0) != -1

    def _as_ours(self, exc: kafka_errors.KafkaError) -> Exception:
        return translate(exc, self._where)

    async def _describe(self, topics: set[str]) -> dict[str, Any]:
        client = self.consumer._client  # noqa: SLF001 - its connections, TLS and SASL
        try:
            return (await describe_topics(client, sorted(topics))).topics
        except kafka_errors.KafkaError as exc:
            raise self._as_ours(exc) from exc

    async def _on_assign(self, assigned: set[TopicPartition]) -> None:
        """Share the fetch budget among the assigned partitions, and ask the ids of the
        assigned topics again: one may have been re-created."""
        self._share_fetch_budget(len(assigned))
        topics = {tp.topic for tp in assigned}
        try:
            await self._refresh_ids(topics)
        except ConnectorError as exc:  # asked again before the next batch is returned
            _log.warning("topic ids of %s not known yet: %s", sorted(topics), exc)

    async def _refresh_ids(self, topics: set[str]) -> None:
        for name, state in (await self._describe(topics)).items():
            if state.topic_id is None:
                self._ids.pop(name, None)
            else:
                self._ids[name] = state.topic_id

    async def _watch_missing(self) -> None:
        """Look again for the topics of TOPICS that did not exist, now and then."""
        now = time.monotonic()
        if now < self._next_missing_check:
            return
        warn = now >= self._next_missing_warning
        self._next_missing_check = now + _MISSING_CHECK_S
        if warn:
            self._next_missing_warning = now + _MISSING_WARNING_S
        try:
            await self._subscribe_existing(warn=warn)
        except RetriableError as exc:
            _log.debug("could not look for topics %s: %s", sorted(self._missing), exc)

    async def batch(self) -> Batch:
        if self._missing:
            await self._watch_missing()
        fetched = await self._fetch()
        if LenientHeaders.lenient != self._lenient_seen:
            self._name_raw_keys(fetched)
        if RESETS:
            self._report_resets()
        # `Record`s already (AS_RECORD: connectors.kafka.fetched_records), one list a partition
        if not any(fetched.values()):
            return Batch([])
        await self._note_skipped(fetched)
        return Batch.of_runs(fetched.values(), await self._ids_of(fetched))

    async def _note_skipped(self, fetched: dict[TopicPartition, list[Any]]) -> None:
        """Where a partition's position went past its last record (transaction markers,
        aborted records, compacted gaps: offsets that hold nothing to deliver), remember
        it, so committing that record's next offset commits the position instead: the
        group's lag then reaches 0 and a restart does not fetch them again."""
        for tp, messages in fetched.items():
            after = messages[-1].offset + 1
            try:
                position = int(await self.consumer.position(tp))
            except kafka_errors.KafkaError:
                # revoked meanwhile, or no position to be had now: committing `after`
                # is right in any case, and the records taken must not be dropped here
                continue
            if position > after:
                self._skipped[(tp.topic, tp.partition)] = (after, position)

    async def _fetch(self) -> dict[TopicPartition, list[Any]]:
        """What has arrived, completed by further fetches while the log holds more
        (`connectors.kafka.gathering`): a backlog is read in full batches."""
        consumer, wait = self.consumer, self._context.batch_max_wait_ms
        most = self._context.batch_max_messages
        if not self._subscribed:  # no topic of TOPICS exists yet: nothing to poll
            await asyncio.sleep(max(wait, _IDLE_WAIT_MS) / 1000)
            return {}
        deadline = time.monotonic() + wait / 1000
        listener, committed = self._listener, self._settings.isolation_level == "read_committed"
        generation = listener.generation if listener is not None else 0
        fetched: dict[TopicPartition, list[Any]] = {}
        try:
            fetched = await consumer.getmany(timeout_ms=wait, max_records=most)
            if not fetched and wait == 0:
                fetched = await consumer.getmany(timeout_ms=_IDLE_WAIT_MS, max_records=most)
            if fetched:
                gathered = await gather(
                    consumer, fetched, most=most, deadline=deadline, committed_only=committed,
                    revoked=lambda: listener is not None and listener.generation != generation,
                )  # fmt: skip
                if not gathered:  # a rebalance meanwhile: what was taken is given back
                    await give_back(self.consumer, fetched)
                fetched = gathered
        except kafka_errors.KafkaError as exc:
            # A fetch that failed part-way through a gathering: what the fetches before it
            # took is given back, or the retried poll would start after it.
            await give_back(self.consumer, fetched)
            raise self._as_ours(exc) from exc
        return fetched

    def _share_fetch_budget(self, partitions: int) -> None:
        """Each assigned partition fetches its share of `KAFKA_FETCH_BUDGET_BYTES`."""
        size = partition_fetch_bytes(self._settings, partitions)
        set_partition_fetch_bytes(self.consumer, size)
        _log.debug("%d partitions assigned: %d bytes per partition fetch", partitions, size)

    async def _ids_of(self, fetched: dict[TopicPartition, list[Any]]) -> dict[str, str]:
        """The id of every topic in `fetched`; when one cannot be known, the records are
        given back (the positions rewound to them) and the poll is retried."""
        topics = {tp.topic for tp in fetched}
        if topics - self._ids.keys():
            try:
                await self._refresh_ids(topics - self._ids.keys())
            except ConnectorError:
                await give_back(self.consumer, fetched)
                raise
            unknown = topics - self._ids.keys()
            if unknown:
                await give_back(self.consumer, fetched)
                raise RetriableError(f"kafka: no topic id for {sorted(unknown)} yet")
        ids = self._ids
        return {topic: ids[topic] for topic in topics}

    def _name_raw_keys(self, fetched: dict[TopicPartition, list[Any]]) -> None:
        """Name each record whose header keys are not UTF-8 (read leniently, kept as
        bytes): the partition is not blocked, but whoever produced it should know."""
        self._lenient_seen = LenientHeaders.lenient
        for messages in fetched.values():
            for m in messages:
                raw = [k.encode("utf-8", "surrogateescape") for k, _ in m.headers if is_raw(k)]
                if raw:
                    _log.warning(
                        "%s[%d]@%d: header keys %s are not UTF-8; read and kept as their "
                        "bytes",
                        m.topic, m.partition, m.offset, ", ".join(map(repr, raw)),
                    )  # fmt: skip

    def _report_resets(self) -> None:
        name, policy = self._context.connector_name, self._settings.auto_offset_reset
        while RESETS:
            topic, partition, old, new = RESETS.popleft()
            if new >= old:
                effect = f"{new - old} offsets skipped"
            else:
                effect = f"offsets {new} to {old - 1} are read again"
            _log.warning(
                "%s[%d]: position %d is no longer in the log (records deleted by retention "
                "or kafka-delete-records, or the topic re-created): reset to %d by "
                "KAFKA_AUTO_OFFSET_RESET=%s, %s",
                topic, partition, old, new, policy, effect,
            )  # fmt: skip
            metrics.OFFSET_RESETS.labels(name, topic).inc()
            self._ids.pop(topic, None)  # asked again: the topic may be a new one

    async def commit(self, offsets: Mapping[TP, int]) -> None:
        if not offsets:
            return
        skipped = self._skipped
        through = {
            TopicPartition(t, p): skipped[(t, p)][1] if skipped.get((t, p), (-1,))[0] == o else o
            for (t, p), o in offsets.items()
        }
        try:
            await self.consumer.commit(through)
        except kafka_errors.CommitFailedError as exc:
            # The group moved on without us; the written batch is replayed by the new owner
            # and overwritten idempotently, so this loses nothing.
            _log.warning("commit refused after a rebalance, records will be replayed: %s", exc)
        except kafka_errors.KafkaError as exc:
            raise self._as_ours(exc) from exc

    def assignment(self) -> set[TP]:
        return {(tp.topic, tp.partition) for tp in self.consumer.assignment()}

    async def end_offsets(self, partitions: set[TP]) -> dict[TP, int]:
        tps = [TopicPartition(t, p) for t, p in partitions]
        try:
            ends = await self.consumer.end_offsets(tps)
        except kafka_errors.KafkaError as exc:
            raise self._as_ours(exc) from exc
        return {(tp.topic, tp.partition): int(o) for tp, o in ends.items()}

    async def positions(self, partitions: set[TP]) -> dict[TP, int]:
        found: dict[TP, int] = {}
        for t, p in partitions:
            try:
                found[(t, p)] = int(await self.consumer.position(TopicPartition(t, p)))
            except kafka_errors.IllegalStateError:
                continue  # revoked meanwhile
            except kafka_errors.KafkaError as exc:
                raise self._as_ours(exc) from exc
        return found

    async def keepalive(self, seconds: float) -> None:
        consumer = self.consumer
        consumer.pause(*consumer.assignment())
        try:
            fetched = await consumer.getmany(timeout_ms=int(seconds * 1000), max_records=1)
        except kafka_errors.KafkaError as exc:
            raise self._as_ours(exc) from exc
        for tp, messages in fetched.items():
            # A partition assigned while paused was not paused yet: rewind to what it gave.
            if messages:
                consumer.seek(tp, messages[0].offset)
                consumer.pause(tp)

    def resume(self) -> None:
        consumer = self.consumer
        consumer.resume(*consumer.assignment())

    async def close(self) -> None:
        if self._consumer is not None:
            await stop_consumer(self._consumer)


def _build(settings: KafkaSettings, context: ReaderContext) -> KafkaReader:
    return KafkaReader(settings, context)


PLUGIN = ReaderPlugin(name="kafka", settings=KafkaSettings, build=_build)

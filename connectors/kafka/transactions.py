"""Exactly-once production: one transactional producer per input partition.

Each input partition the connector consumes gets its own producer, with transactional id
`<connector>-<topic>-<partition>`; what a batch produced from that partition's records, and
the partition's next offset (committed in the consumer group with
`send_offsets_to_transaction`), go in one transaction. A crash before the commit leaves an
open transaction that the partition's next owner aborts when it initialises the same id;
after the commit, output and offset are there together. So a `read_committed` consumer of
the output sees each input record's output once.

Fencing: aiokafka sends no consumer group metadata with the offsets (no KIP-447), so the
broker cannot tell a member that lost the partition from its new owner; the transactional
id is what fences. The new owner initialises the id of each partition it is given, which
aborts the open transaction of any previous holder and makes that holder's next call fail
with `ProducerFenced` (a fatal line naming the id, by the one translation). Producers are
closed when their partitions are revoked (`revoked`), so a producer never outlives the
assignment it was initialised for.

A transaction that completed after the consumer read the partition's committed offset
(the previous owner committed while this one was joining) would make the batch a replay:
after initialising a producer, which waits for the previous transaction on its id to end,
the group's committed offset of the partition is read again, and records below it are
skipped (`floor`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka import TopicPartition as KafkaPartition
from aiokafka import errors as kafka_errors
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from connectors.config.settings import KafkaSettings
from connectors.core.records import Headers, TopicPartition
from connectors.kafka.errors import Where, translate
from connectors.kafka.options import client_options
from connectors.kafka.producer import idempotent_producer

#: One record to produce: key, value, headers.
Prepared = tuple[bytes | None, bytes | None, Headers]


@dataclass
class _Slot:
    """The producer of one input partition and the transaction it has open."""

    producer: AIOKafkaProducer
    where: Where
    floor: int  # the group's committed offset when the producer was initialised (-1: none)
    open: bool = False


def transactional_id(prefix: str, partition: TopicPartition) -> str:
    """The transactional id standing for one input partition of a connector."""
    topic, number = partition
    return f"{prefix}-{topic}-{number}"


class PartitionTransactions:
    """Transactions of one output topic, one producer per input partition.

    `options` are the producer's options (bootstrap servers, client id, linger, ...);
    `where` names the output for error lines.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        prefix: str,
        group_id: str,
        topic: str,
        where: Where,
        options: Mapping[str, Any],
    ) -> None:
        self._settings = settings
        self._prefix = prefix
        self._group_id = group_id
        self._topic = topic
        self._where = where
        self._options = dict(options)
        self._slots: dict[TopicPartition, _Slot] = {}
        # What each partition's open (or aborted, to be redone) transaction produced; kept
        # apart from the producers, which a failure may replace.
        self._kept: dict[TopicPartition, list[Prepared]] = {}
        self._admin: AIOKafkaAdminClient | None = None

    def floor(self, partition: TopicPartition) -> int:
        """Records of `partition` below this offset were already produced and committed."""
        slot = self._slots.get(partition)
        return -1 if slot is None else slot.floor

    async def prepare(self, partitions: Sequence[TopicPartition]) -> None:
        """Initialise the producers of `partitions` not initialised since their assignment
        (fencing any previous holder of their ids) and read their floors."""
        for partition in partitions:
            await self._slot(partition)

    async def send(self, partition: TopicPartition, records: Sequence[Prepared]) -> None:
        """Produce `records` in the open transaction of `partition` (begun if none) and wait
        for the broker's acknowledgement; on failure every open transaction is aborted."""
        slot = await self._slot(partition)
        try:
            await self._begin(slot)
            self._kept.setdefault(partition, []).extend(records)
            await self._produce(slot, records)
        except kafka_errors.KafkaError as exc:
            await self.abort()
            raise translate(exc, slot.where) from exc

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit, partition by partition, the open transaction with the partition's next
        offset. A partition whose transaction failed is aborted and, on the next call,
        produced again from what it kept, in a new transaction; a partition already
        committed is not committed again."""
        for partition, offset in sorted(offsets.items()):
            slot = await self._slot(partition)
            kept = self._kept.get(partition, [])
            if not slot.open and not kept and slot.floor >= offset:
                continue  # committed by an earlier call
            try:
                if not slot.open:
                    await self._begin(slot)
                    await self._produce(slot, kept)
                meta = {KafkaPartition(*partition): OffsetAndMetadata(offset, "")}
                await slot.producer.send_offsets_to_transaction(meta, self._group_id)
                await slot.producer.commit_transaction()
            except kafka_errors.KafkaError as exc:
                await self._abort(slot)
                raise translate(exc, slot.where) from exc
            slot.open, slot.floor = False, offset
            self._kept.pop(partition, None)

    async def abort(self) -> None:
        """Abort every open transaction and forget what it kept (written again by the
        runner's next attempt)."""
        for slot in list(self._slots.values()):
            await self._abort(slot)
        self._kept.clear()

    async def revoked(self, partitions: Sequence[TopicPartition]) -> None:
        """Close the producers of `partitions`: their next owner initialises the ids."""
        for partition in partitions:
            slot = self._slots.pop(partition, None)
            self._kept.pop(partition, None)
            if slot is not None:
                await self._close(slot)

    async def close(self) -> None:
        for partition in list(self._slots):
            await self._close(self._slots.pop(partition))
        if self._admin is not None:
            with contextlib.suppress(Exception):
                await self._admin.close()
            self._admin = None

    async def _slot(self, partition: TopicPartition) -> _Slot:
        slot = self._slots.get(partition)
        if slot is not None:
            return slot
        tid = transactional_id(self._prefix, partition)
        where = Where(
            self._where.head, self._settings, "WRITE", self._where.topics, self._group_id, tid
        )
        producer = idempotent_producer(self._settings, **self._options, transactional_id=tid)
        try:
            await producer.start()  # InitProducerId: waits for, or aborts, the id's last one
            floor = await self._committed(partition)
        except kafka_errors.KafkaError as exc:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise translate(exc, where) from exc
        slot = self._slots[partition] = _Slot(producer, where, floor)
        return slot

    async def _committed(self, partition: TopicPartition) -> int:
        """The group's committed offset of `partition` now (-1: none)."""
        if self._admin is None:
            admin = AIOKafkaAdminClient(
                **client_options(self._settings), client_id=f"{self._prefix}-transactions"
            )
            await admin.start()
            self._admin = admin
        tp = KafkaPartition(*partition)
        found = await self._admin.list_consumer_group_offsets(self._group_id, partitions=[tp])
        meta = found.get(tp)
        return -1 if meta is None or meta.offset is None else int(meta.offset)

    async def _begin(self, slot: _Slot) -> None:
        if not slot.open:
            await slot.producer.begin_transaction()
            slot.open = True

    async def _produce(self, slot: _Slot, records: Sequence[Prepared]) -> None:
        producer, topic = slot.producer, self._topic
        sent = [
            await producer.send(topic, value=value, key=key, headers=list(headers))
            for key, value, headers in records
        ]
        await asyncio.gather(*sent)

    async def _abort(self, slot: _Slot) -> None:
        """Abort the slot's open transaction; a producer that cannot (fenced, broken) is
        closed, and the partition gets a new one when it is used again."""
        if not slot.open:
            return
        slot.open = False
        try:
            await slot.producer.abort_transaction()
        except Exception:  # noqa: BLE001 - the broker aborts it anyway (timeout, new owner)
            for partition, found in list(self._slots.items()):
                if found is slot:
                    del self._slots[partition]
            await self._close(slot)

    async def _close(self, slot: _Slot) -> None:
        with contextlib.suppress(Exception):
            await slot.producer.stop()

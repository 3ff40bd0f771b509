"""Five corrections and one economy for aiokafka 0.14, installed once when
`connectors.kafka` is imported.

Every aiokafka client of the process is one of the runtime's, so each correction holds for
all of them:

- **No topic is created by naming it.** aiokafka's metadata requests ask the broker to
  create every topic they name (`allow_auto_topic_creation` true, with no option to turn it
  off), so a consumer subscribed to a missing topic, a producer to a missing dead-letter
  topic or a health check describing one would create it on a cluster that allows it. A
  connector reads topics someone else owns; the dead-letter topic is created only when
  `DLQ_CREATE=true` says so (`connectors.kafka.dead_letters`).
- **Header keys that are not UTF-8** are read and written byte for byte instead of
  crashing the fetcher (`connectors.kafka.raw_headers`).
- **A fenced static member knows it.** aiokafka's heartbeats do not name the member's
  `group.instance.id`, so the member a second process with the same
  `KAFKA_GROUP_INSTANCE_ID` replaced was told "unknown member", rejoined and took the
  partitions back, the two alternating forever. Heartbeats name it
  (`connectors.kafka.heartbeat`), the broker answers FENCED_INSTANCE_ID (error 82), which
  gets a class of its own here (aiokafka maps the code to `UnknownError`), and the error
  (or aiokafka's text naming it) is fatal (`connectors.kafka.errors`).
- **Offset resets are reported** to the reader, which logs a WARNING and counts them
  (`connectors.kafka.resets`), instead of one INFO line.
- **The reader's records are the runtime's `Record`s**, built once, instead of aiokafka's
  `ConsumerRecord`s converted again (`connectors.kafka.fetched_records`; other consumers
  are not affected).
"""

from __future__ import annotations

from typing import Any

from aiokafka import client as kafka_client
from aiokafka import errors as kafka_errors
from aiokafka.admin import client as admin_client
from aiokafka.consumer import fetcher
from aiokafka.producer import message_accumulator
from aiokafka.producer import producer as kafka_producer
from aiokafka.protocol.metadata import MetadataRequest

from connectors.kafka import heartbeat, resets
from connectors.kafka.fetched_records import RecordPartitionRecords
from connectors.kafka.raw_headers import LenientBuilder, LenientRecords

FENCED_INSTANCE_ID = 82


class FencedInstanceIdError(kafka_errors.BrokerResponseError):  # type: ignore[misc]
    """Another member joined the group with our `group.instance.id` and replaced us."""

    errno = FENCED_INSTANCE_ID
    message = "FENCED_INSTANCE_ID"
    description = (
        "The broker rejected this static consumer since another consumer with the same "
        "group.instance.id has registered with a different member.id."
    )


class NamedTopicsOnly(MetadataRequest):  # type: ignore[misc]
    """aiokafka's metadata request, never asking the broker to create what it names."""

    def __init__(
        self, topics: list[str] | None = None, allow_auto_topic_creation: bool | None = False
    ) -> None:
        super().__init__(topics, bool(allow_auto_topic_creation))


_installed = False


def install() -> None:
    """Apply the corrections (idempotent)."""
    global _installed  # noqa: PLW0603 - one switch for the process
    if _installed:
        return
    modules: list[Any] = [kafka_client, admin_client]
    for module in modules:
        module.MetadataRequest = NamedTopicsOnly
    fetcher_module: Any = fetcher
    fetcher_module.MemoryRecords = LenientRecords
    fetcher_module.PartitionRecords = RecordPartitionRecords
    for module in (message_accumulator, kafka_producer):
        builder_module: Any = module
        builder_module.DefaultRecordBatchBuilder = LenientBuilder
    kafka_errors.kafka_errors.setdefault(FENCED_INSTANCE_ID, FencedInstanceIdError)
    resets.install()
    heartbeat.install()
    _installed = True

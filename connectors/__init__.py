"""The connector runtime's public API: what plugins and transforms may import.

Plugins (`readers/`, `writers/`, `transforms/`, third-party packages) import from here only
(the Kafka reader and writer also from `connectors.kafka`); the modules behind it may move.
"""

from typing import TYPE_CHECKING, Any

from connectors.config.names import host_ports, topic_name
from connectors.config.settings import (
    KafkaSettings,
    RuntimeSettings,
    Settings,
    encoding_hint,
    mask_url,
    readable_file,
)
from connectors.core.dead_letters import H_OFFSET as DLQ_ORIGINAL_OFFSET
from connectors.core.dead_letters import H_PARTITION as DLQ_ORIGINAL_PARTITION
from connectors.core.dead_letters import H_TOPIC as DLQ_ORIGINAL_TOPIC
from connectors.core.documents import document
from connectors.core.errors import (
    ConfigError,
    ConnectorError,
    FatalError,
    PoisonError,
    Problem,
    RetriableError,
    worst,
)
from connectors.core.reader import OnRevoke, Reader, ReaderContext, ReaderPlugin
from connectors.core.records import (
    RAW,
    TRACE_HEADERS,
    TYPE_HEADER,
    Batch,
    Entry,
    Headers,
    Record,
    TopicPartition,
    WriteBatch,
)
from connectors.core.transform import Delete, Put, TransformContext, transform
from connectors.core.writer import (
    FlushPolicy,
    KeyValueView,
    StoresBytes,
    Writer,
    WriterContext,
    WriterPlugin,
    stores_bytes,
)
from connectors.observability import metrics
from connectors.observability.tracing import http_headers as trace_headers

if TYPE_CHECKING:
    from connectors.producer import Producer, SyncProducer


def __getattr__(name: str) -> Any:
    """`Producer` and `SyncProducer` load the Kafka client on first use only: a plugin that
    imports `connectors` for `transform` or `Put` does not pay for it."""
    if name in ("Producer", "SyncProducer"):
        from connectors import producer

        return getattr(producer, name)
    raise AttributeError(f"module 'connectors' has no attribute {name!r}")


__all__ = [
    "DLQ_ORIGINAL_OFFSET",
    "DLQ_ORIGINAL_PARTITION",
    "DLQ_ORIGINAL_TOPIC",
    "RAW",
    "TRACE_HEADERS",
    "TYPE_HEADER",
    "Batch",
    "ConfigError",
    "ConnectorError",
    "Delete",
    "Entry",
    "FatalError",
    "FlushPolicy",
    "Headers",
    "KafkaSettings",
    "KeyValueView",
    "OnRevoke",
    "PoisonError",
    "Problem",
    "Producer",
    "Put",
    "Reader",
    "ReaderContext",
    "ReaderPlugin",
    "Record",
    "RetriableError",
    "RuntimeSettings",
    "Settings",
    "SyncProducer",
    "TopicPartition",
    "TransformContext",
    "StoresBytes",
    "Writer",
    "WriterContext",
    "WriterPlugin",
    "WriteBatch",
    "document",
    "encoding_hint",
    "host_ports",
    "mask_url",
    "metrics",
    "readable_file",
    "stores_bytes",
    "topic_name",
    "trace_headers",
    "transform",
    "worst",
]

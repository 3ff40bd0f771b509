"""The connector runtime's public API: what plugins and transforms may import.

Plugins (`readers/`, `writers/`, `transforms/`, third-party packages) import from here only;
the modules behind it may move.
"""

from connectors.config import KafkaSettings, RuntimeSettings, Settings, mask_url, readable_file
from connectors.errors import (
    ConfigError,
    ConnectorError,
    FatalError,
    PoisonError,
    Problem,
    RetriableError,
)
from connectors.reader import OnRevoke, Reader, ReaderContext, ReaderPlugin
from connectors.records import Batch, Entry, Headers, Record, TopicPartition, WriteBatch
from connectors.tracing import http_headers as trace_headers
from connectors.transform import Delete, Put, TransformContext, transform
from connectors.writer import FlushPolicy, KeyValueView, Writer, WriterContext, WriterPlugin

__all__ = [
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
    "Put",
    "Reader",
    "ReaderContext",
    "ReaderPlugin",
    "Record",
    "RetriableError",
    "RuntimeSettings",
    "Settings",
    "TopicPartition",
    "TransformContext",
    "Writer",
    "WriterContext",
    "WriterPlugin",
    "WriteBatch",
    "mask_url",
    "readable_file",
    "trace_headers",
    "transform",
]

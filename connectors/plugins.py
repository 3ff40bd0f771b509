"""The process-wide registries of readers and writers, filled from entry points."""

from __future__ import annotations

from connectors.reader import ReaderPlugin
from connectors.registry import Registry
from connectors.writer import WriterPlugin


def _reader(item: object) -> ReaderPlugin:
    if not isinstance(item, ReaderPlugin):
        raise TypeError(f"entry point gave {type(item).__name__}, expected ReaderPlugin")
    return item


def _writer(item: object) -> WriterPlugin:
    if not isinstance(item, WriterPlugin):
        raise TypeError(f"entry point gave {type(item).__name__}, expected WriterPlugin")
    return item


READERS: Registry[ReaderPlugin] = Registry("reader", "connectors.readers", _reader)
WRITERS: Registry[WriterPlugin] = Registry("writer", "connectors.writers", _writer)

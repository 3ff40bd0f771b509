"""Test-only plugins of the fault suite, loaded by `connector run` through TRANSFORM_MODULES.

- writer `recorded`: the writer named by `RECORD_WRITER` (`kv`, `http`, `s3`), unchanged,
  except that after each successful `write` it appends what the batch covered to
  `<RECORD_DIR>/<RECORD_LABEL>-<pid>.log`, so the suite can count records written more
  than once and see when writing resumed after a fault. One `os.write` per batch on an
  O_APPEND file: a kill -9 loses at most the note of the batch it interrupted (so the
  duplicate count is a lower bound by at most one batch per kill). Format per batch::

      @ <unix time> <records>
      <topic> <partition> <offset>      (one line per record)

  `RECORD_RATE` (records/s, 0 = unlimited) paces the writer like a slow sink, so that a
  run lasts long enough for a fault to land in its middle.
- reader `kafka_gated`: the Kafka reader, reading nothing until the file `FAULTS_GATE`
  exists (it keeps its partitions paused and polls, as the runner does while retrying), so
  that a group of several processes forms before any of them starts on the data.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import readers.kafka as kafka_reader
from connectors import (
    Batch,
    ReaderContext,
    ReaderPlugin,
    WriteBatch,
    Writer,
    WriterContext,
    WriterPlugin,
)
from connectors.config.settings import KafkaSettings
from connectors.core.registry import READERS, WRITERS


class RecordingWriter:
    def __init__(self, inner: Writer) -> None:
        self._inner = inner
        folder = Path(os.environ["RECORD_DIR"])
        label = os.environ.get("RECORD_LABEL", "connector")
        self._path = folder / f"{label}-{os.getpid()}.log"
        self._fd: int | None = None
        self._rate = float(os.environ.get("RECORD_RATE", "0"))
        self._began: float | None = None
        self._written = 0
        policy = getattr(inner, "flush_policy", None)
        if policy is not None:
            self.flush_policy = policy

    async def start(self) -> None:
        await self._inner.start()
        self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    async def write(self, batch: WriteBatch) -> None:
        await self._inner.write(batch)
        records = batch.batch.records
        lines = [f"@ {time.time():.6f} {len(records)}\n"]
        lines.extend(f"{r.topic} {r.partition} {r.offset}\n" for r in records)
        if self._fd is not None:
            os.write(self._fd, "".join(lines).encode())
        await self._pace(len(records))

    async def _pace(self, count: int) -> None:
        if self._rate <= 0:
            return
        now = time.monotonic()
        if self._began is None or now - (self._began + self._written / self._rate) > 1.0:
            # Time without partitions is no credit for a burst later: a slow sink stays slow.
            self._began, self._written = now, 0
        self._written += count
        ahead = self._began + self._written / self._rate - now
        if ahead > 0:
            await asyncio.sleep(ahead)  # a slow sink, not synchronisation

    async def check(self) -> None:
        await self._inner.check()

    async def close(self) -> None:
        try:
            await self._inner.close()
        finally:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _register_recorded() -> None:
    inner = WRITERS.get(os.environ.get("RECORD_WRITER", "kv"))

    def build(settings: Any, context: WriterContext) -> RecordingWriter:
        return RecordingWriter(inner.build(settings, context))

    WRITERS.register("recorded", WriterPlugin("recorded", inner.settings, build, inner.open_view))


class GatedKafkaReader(kafka_reader.KafkaReader):
    """The Kafka reader, idle (partitions paused, still polling) until `FAULTS_GATE`
    exists."""

    def __init__(self, settings: KafkaSettings, context: ReaderContext) -> None:
        super().__init__(settings, context)
        self._gate = Path(os.environ["FAULTS_GATE"])
        self._open = False

    async def batch(self) -> Batch:
        if not self._open:
            if not self._gate.exists():
                await self.keepalive(0.2)
                return Batch([])
            self._open = True
            self.resume()
        return await super().batch()


def _register_readers() -> None:
    kafka = READERS.get("kafka")
    READERS.register(
        "kafka_gated",
        ReaderPlugin("kafka_gated", kafka.settings, lambda s, c: GatedKafkaReader(s, c)),
    )


if os.environ.get("RECORD_DIR"):
    _register_recorded()
_register_readers()

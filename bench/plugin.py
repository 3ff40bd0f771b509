"""`bench_kv`: the real KV writer, wrapped to time the runtime from inside its own process.

Registered through `TRANSFORM_MODULES=bench.plugin` with `WRITER=bench_kv`, so `connector run`
is otherwise exactly what a user runs. Per `write` call (one batch) it notes the wall clock and
the process's CPU time (all threads, so the LMDB worker thread counts) before the first and
after the last write; with `BENCH_LATENCY_FILE` set it also records, per record, the time
from the record's Kafka timestamp (CreateTime: when the producer produced it) to the moment
the inner write returned, that is, when LMDB committed the transaction holding it. The LMDB
writer stages its writes (`StagesWrites`): then the moment is when the staged commit ended.

Everything is written at `close()` (the runner calls it on exit, also after SIGTERM):
`BENCH_STATS_FILE` gets a JSON object, `BENCH_LATENCY_FILE` pairs of int64
(record timestamp ms, latency in microseconds).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from array import array
from collections.abc import Awaitable
from pathlib import Path

from connectors import WriteBatch, Writer, WriterContext, WriterPlugin, metrics, stores_bytes
from connectors.core.registry import WRITERS
from connectors.core.writer import stager
from writers.kv import PLUGIN as KV
from writers.kv.settings import KVSettings


class TimedWriter:
    def __init__(self, inner: Writer) -> None:
        self._inner = inner
        self.stores_bytes = stores_bytes(inner)
        stats = os.environ.get("BENCH_STATS_FILE")
        latency = os.environ.get("BENCH_LATENCY_FILE")
        self._stats = Path(stats) if stats else None
        if self._stats is not None and os.environ.get("WORKERS", "1").strip() != "1":
            # WORKERS=N: one file per worker, merged by bench.run.merged_stats.
            self._stats = self._stats.with_name(f"{self._stats.name}.{os.getpid()}")
        self._latency = Path(latency) if latency else None
        self._samples = array("q")
        self._first: tuple[float, float] | None = None
        self._last: tuple[float, float] = (0.0, 0.0)
        self._records = 0
        self._batches = 0
        if stager(inner) is not None:
            self.stage = self._stage  # only then is this writer a `StagesWrites` too

    async def start(self) -> None:
        await self._inner.start()

    async def write(self, batch: WriteBatch) -> None:
        self._began()
        await self._inner.write(batch)
        self._stored(len(batch.batch.records), self._timestamps(batch))

    async def _stage(self, batch: WriteBatch) -> Awaitable[None]:
        inner = stager(self._inner)
        assert inner is not None
        self._began()
        durable = asyncio.ensure_future(await inner.stage(batch))
        count, timestamps = len(batch.batch.records), self._timestamps(batch)
        durable.add_done_callback(
            lambda done: (
                None if done.cancelled() or done.exception() else self._stored(count, timestamps)
            )
        )
        return durable

    def _began(self) -> None:
        if self._first is None:
            self._first = (time.time(), time.process_time())

    def _timestamps(self, batch: WriteBatch) -> array[int] | None:
        if self._latency is None:
            return None
        return array("q", (record.timestamp_ms for record in batch.batch.records))

    def _stored(self, count: int, timestamps: array[int] | None) -> None:
        now = time.time()
        self._last = (now, time.process_time())
        self._records += count
        self._batches += 1
        if timestamps is not None:
            now_us = int(now * 1_000_000)
            samples = self._samples
            for timestamp_ms in timestamps:
                samples.append(timestamp_ms)
                samples.append(now_us - timestamp_ms * 1000)

    async def check(self) -> None:
        await self._inner.check()

    async def close(self) -> None:
        await self._inner.close()
        if self._stats is not None:
            first = self._first or self._last
            self._stats.write_text(
                json.dumps(
                    {
                        "records": self._records,
                        "batches": self._batches,
                        "first_write_at": first[0],
                        "last_write_at": self._last[0],
                        "cpu_first": first[1],
                        "cpu_last": self._last[1],
                        "stage_seconds": stage_seconds(),
                    }
                ),
                encoding="utf-8",
            )
        if self._latency is not None:
            with self._latency.open("wb") as out:
                self._samples.tofile(out)


def stage_seconds() -> dict[str, float]:
    """The runtime's own per-stage time (connector_stage_seconds), summed over the run."""
    totals: dict[str, float] = {}
    for family in metrics.REGISTRY.collect():
        if family.name != "connector_stage_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_sum"):
                stage = sample.labels["stage"]
                totals[stage] = totals.get(stage, 0.0) + sample.value
    return totals


def _build(settings: KVSettings, context: WriterContext) -> TimedWriter:
    return TimedWriter(KV.build(settings, context))


WRITERS.register("bench_kv", WriterPlugin("bench_kv", KVSettings, _build, KV.open_view))

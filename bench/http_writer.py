"""`python -m bench.http_writer`: the HTTP writer's throughput against the local receiver.

In process, no Kafka: 6,000 entries in batches of 3,000 over 3 partitions, written by the
writer as the runner drives it (a retriable error: the next attempt gets what is not
stored). Modes: batch to one URL, per record to one URL, per record routed
(`PUT /contacts/{value.user_id}` with the envelope), and batch with 20 % of requests
answered 500, once resending only what failed (partial success) and once resending the
whole batch (the baseline: the writer's `stored` discarded, as the runner did before).
"""

from __future__ import annotations

import asyncio
import json
import platform
import time
from typing import Any

from connectors import RetriableError, WriteBatch, WriterContext
from connectors.testing.conformance import make_batch
from harness.http_sink import HttpSink
from writers.http import PLUGIN
from writers.http.settings import HTTPSettings

TOTAL, BATCH = 6_000, 3_000


def batches() -> list[WriteBatch]:
    rows = [
        (n % 3, n // 3, b"u%d" % (n % 700), json.dumps({"user_id": f"u{n % 700}", "n": n}).encode())
        for n in range(TOTAL)
    ]
    return [make_batch("prefs", rows[i : i + BATCH]) for i in range(0, TOTAL, BATCH)]


async def drive(settings: HTTPSettings, partial: bool) -> int:
    writer = PLUGIN.build(settings, WriterContext(connector_name="bench"))
    await writer.start()
    attempts = 0
    try:
        for batch in batches():
            pending = batch
            while attempts < 200:  # the baseline may never get a batch through
                attempts += 1
                try:
                    await writer.write(pending)
                    break
                except RetriableError as exc:
                    if partial and exc.stored:
                        kept = tuple(
                            e for i, e in enumerate(pending.entries) if i not in exc.stored
                        )
                        pending = WriteBatch(pending.batch, kept)
                    elif not partial:
                        writer._forget()  # type: ignore[attr-defined]  # no memory of taken requests
    finally:
        await writer.close()
    return attempts


def run(name: str, sink: HttpSink, path: str, partial: bool = True, **extra: Any) -> str:
    settings = HTTPSettings(url=sink.url(path), **extra)
    started = time.perf_counter()
    attempts = asyncio.run(drive(settings, partial))
    seconds = time.perf_counter() - started
    docs = sum(len(r.documents()) for r in sink.received() if r.path.startswith(path.split("{")[0]))
    return f"| {name} | {TOTAL / seconds:,.0f} | {docs / TOTAL:.2f} | {attempts} |"


def main() -> int:
    lines = [
        "| mode | records/s | documents received per record | write attempts |",
        "|---|---:|---:|---:|",
    ]
    with HttpSink() as sink:
        lines.append(run("batch, one URL", sink, "/batch"))
        lines.append(run("per record, one URL", sink, "/one", batch=False, max_in_flight=8))
        lines.append(
            run("per record, PUT /contacts/{value.user_id}, envelope", sink,
                "/contacts/{value.user_id}", batch=False, method="PUT", envelope=True,
                max_in_flight=8)
        )  # fmt: skip
        sink.chaos("/flaky-partial", fail_ratio=0.2, rng=1)
        lines.append(
            run(
                "batch of 100, 20 % 500s, resend only what failed",
                sink,
                "/flaky-partial",
                batch_max_messages=100,
            )
        )
        sink.chaos("/flaky-whole", fail_ratio=0.2, rng=1)
        lines.append(
            run(
                "batch of 100, 20 % 500s, whole batch resent (baseline)",
                sink,
                "/flaky-whole",
                partial=False,
                batch_max_messages=100,
            )
        )
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"{platform.machine()}, Python {platform.python_version()}, {when}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`python -m bench.transforms`: an async transform awaiting a 5 ms HTTP call per record, at
several TRANSFORM_CONCURRENCY values.

The transform is what an enrichment transform looks like (`await ctx.http.get(url)`, then
`Put`), run by the runtime's own transform stage (`connectors.runtime.transforming`, as the
runner calls it for each batch: the chain, `ctx.http`, the in-flight gauge) over in-memory
batches of records from three partitions; no broker, no writer. The HTTP server is a child
process (asyncio, keep-alive) that answers every GET after `asyncio.sleep(delay)`, so the
server's work does not share the measured process's interpreter.

Each concurrency runs `--runs` times, interleaved (1, 16, 64, 1, 16, 64, ...), each run
for at least `--seconds`; the median records/s is reported with its ratio to the
sequential figure (TRANSFORM_CONCURRENCY=1). `--append` adds the table to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

from bench.run import RESULTS, load_average, machine, wait_for_quiet
from connectors import Put, Record, TransformContext
from connectors.config.transforms import TransformSettings
from connectors.core.transform import Chain, Decoded
from connectors.observability.tracing import BatchTrace
from connectors.runtime.transforming import TransformStage

URL = ""  # set once the server answers
OFF = BatchTrace()  # tracing off, as by default


async def call_5ms(message: Any, ctx: TransformContext) -> Put:
    """The benchmarked transform: one awaited HTTP call per record."""
    response = await ctx.http.get(URL)
    return Put(ctx.key, response.content)


# --------------------------------------------------------------------------- server


async def _serve(delay_s: float) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if not head:
                    break
                await asyncio.sleep(delay_s)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, backlog=512)
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    async with server:
        await server.serve_forever()


def start_server(delay_s: float) -> tuple[subprocess.Popen[str], str]:
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.transforms", "--serve", str(delay_s)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    port = child.stdout.readline().strip()
    if not port.isdigit():
        child.kill()
        raise RuntimeError("the 5 ms server did not start")
    return child, f"http://127.0.0.1:{port}/lookup"


# --------------------------------------------------------------------------- measure


class _NoRetry:
    """The stage's retrier; the server never fails, so it is never called."""

    async def __call__(self, stage: str, call: Any, *, keepalive: bool) -> Any:
        raise AssertionError("no retry expected")


def batches(size: int, partitions: int = 3) -> list[Decoded]:
    decoded: list[Decoded] = []
    for i in range(size):
        key = f"k{i}".encode()
        record = Record("lookups", i % partitions, i // partitions, key, key, (), 0)
        decoded.append((i, record, key))
    return decoded


class Run(NamedTuple):
    rate: float
    """records/s"""
    cpu_us: float
    """CPU time of this process (all threads) per record, µs"""


async def measure(concurrency: int, seconds: float, batch_size: int) -> Run:
    """Records/s of the stage at `concurrency`, over whole batches, for at least `seconds`,
    and the CPU time per record it took."""
    settings = TransformSettings(concurrency=concurrency, http_timeout_s=10)
    retry: Any = _NoRetry()
    stage = TransformStage(Chain((("call_5ms", call_5ms),)), settings, retry, "bench")
    stage.start()
    batch = batches(batch_size)
    try:
        await stage.apply(batch[: min(concurrency, batch_size)], OFF)  # connections opened
        done, started, cpu = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - started < seconds or done == 0:
            applied = await stage.apply(batch, OFF)
            assert len(applied.entries) == batch_size and not applied.poison
            done += batch_size
        elapsed, spent = time.perf_counter() - started, time.process_time() - cpu
        return Run(done / elapsed, spent / done * 1e6)
    finally:
        await stage.close()


def run(levels: list[int], runs: int, seconds: float, batch_size: int) -> dict[int, list[Run]]:
    found: dict[int, list[Run]] = {level: [] for level in levels}
    for n in range(runs):
        for level in levels:
            result = asyncio.run(measure(level, seconds, batch_size))
            found[level].append(result)
            print(
                f"run {n + 1} TRANSFORM_CONCURRENCY={level}: {result.rate:,.0f} records/s, "
                f"{result.cpu_us:,.0f} CPU-µs a record",
                flush=True,
            )
    return found


def table(found: dict[int, list[Run]], delay_ms: float) -> str:
    base = statistics.median(r.rate for r in found[min(found)])
    ideal = 1000 / delay_ms
    lines = [
        "| TRANSFORM_CONCURRENCY | records/s (median) | runs | × sequential | ideal "
        "| CPU-µs a record (median) |",
        "|---:|---:|---|---:|---:|---:|",
    ]
    for level, runs in found.items():
        median = statistics.median(r.rate for r in runs)
        cpu = statistics.median(r.cpu_us for r in runs)
        each = ", ".join(f"{r.rate:,.0f}" for r in runs)
        lines.append(
            f"| {level} | {median:,.0f} | {each} | {median / base:.1f} | {ideal * level:,.0f} "
            f"| {cpu:,.0f} |"
        )
    return "\n".join(lines)


def entry(found: dict[int, list[Run]], delay_ms: float, batch_size: int, took: str) -> str:
    box = machine()
    one, five, _ = load_average()
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"\n## {when}: async transform, {delay_ms:g} ms HTTP call per record "
        f"(`python -m bench.transforms`)\n\n"
        f"{box['cpus']} cores ({box['cpu_model']}), {box['ram']}, kernel {box['kernel']}, "
        f"Python {sys.version.split()[0]}; load average {one:.2f} / {five:.2f} (1 / 5 min) "
        f"at the end; {took}. The runtime's transform stage over batches of {batch_size} "
        "records (3 partitions), `ctx.http` against a local server answering each GET after "
        f"{delay_ms:g} ms; no broker, no writer. Ideal: concurrency × 1000 / {delay_ms:g}.\n\n"
        f"{table(found, delay_ms)}\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.transforms", description=__doc__)
    parser.add_argument("--levels", default="1,16,64", help="TRANSFORM_CONCURRENCY values")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="least time per run")
    parser.add_argument("--delay-ms", type=float, default=5.0)
    parser.add_argument("--batch", type=int, default=500, help="records per batch")
    parser.add_argument("--append", action="store_true", help="add the entry to RESULTS.md")
    parser.add_argument(
        "--max-load", type=float, default=2.0, help="wait for a 1-minute load average below this"
    )
    parser.add_argument("--wait-s", type=float, default=600, help="longest wait for it")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--serve", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:
        asyncio.run(_serve(args.serve))
        return 0
    wait_for_quiet(args.max_load, args.wait_s)
    load_at_start = load_average()[0]
    global URL
    server, URL = start_server(args.delay_ms / 1000)
    started = time.monotonic()
    try:
        levels = [int(level) for level in args.levels.split(",")]
        found = run(levels, args.runs, args.seconds, args.batch)
    finally:
        server.terminate()
        server.wait(timeout=10)
    took = (
        f"{args.runs} runs of at least {args.seconds:g} s each, "
        f"{time.monotonic() - started:.0f} s in all, load average {load_at_start:.2f} at the start"
    )
    text = entry(found, args.delay_ms, args.batch, took)
    print(text)
    if args.append:
        with args.results.open("a") as results:
            results.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`python -m bench.ab`: variants of R (or R0) against each other, interleaved.

On a shared machine absolute figures drift with the load; a ratio between two runs made
back to back does not drift as much. Each round runs every variant once, in turn, on the
same preloaded topic; the report gives each variant's median and its ratio to the first.

    python -m bench.ab --messages 500000 --rounds 3 \\
        --variant base --variant 'gc-default:@gc=default' \\
        --variant 'old:@root=/tmp/base' --variant 'batch5000:BATCH_MAX_MESSAGES=5000'

A variant is `name[:item,item...]`; an item is `NAME=VALUE` (a connector variable, or
LD_PRELOAD), `@root=DIR` (run the runtime of another checkout), `@gc=default` (leave the
collector as CPython sets it) or `@gc=Y/M/O` (other thresholds), `@passthrough` (R0 instead of R).
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import PYTHON, ROOT, run
from bench.run import Setup, connector_env


@dataclass
class Variant:
    name: str
    env: dict[str, str] = field(default_factory=dict)
    root: Path = ROOT
    gc: str | None = None
    passthrough: bool = False

    @classmethod
    def parse(cls, text: str) -> Variant:
        name, _, items = text.partition(":")
        variant = cls(name)
        # a comma starts a new item only before NAME= or @: MALLOC_CONF=a:1,b:2 is one item
        for item in filter(None, re.split(r",(?=[A-Z_][A-Z0-9_]*=|@)", items)):
            key, _, value = item.partition("=")
            if key == "@root":
                variant.root = Path(value).resolve()
            elif key == "@gc":
                variant.gc = value
            elif key == "@passthrough":
                variant.passthrough = True
            else:
                variant.env[key] = value
        return variant


def run_variant(
    setup: Setup, variant: Variant, topic: str, n: int
) -> tuple[float, float, float, str]:
    """(msg/s first write to last, CPU-s per million, peak RSS MB, where the time went:
    batches written and the runtime's seconds per stage) of one run."""
    import json

    tag = uuid.uuid4().hex[:8]
    kv_dir = setup.workdir / f"kv-{variant.name}-{tag}"
    stats = setup.workdir / "logs" / f"{variant.name}-{tag}.stats.json"
    env = connector_env(
        setup, topic, passthrough=variant.passthrough, kv_dir=kv_dir, root=variant.root
    )
    env.update(variant.env, BENCH_STATS_FILE=str(stats))
    main = "connectors.cli" if variant.gc is None else "bench.connector_gc_default"
    if variant.gc is not None:
        env["PYTHONPATH"] = f"{env['PYTHONPATH']}:{ROOT}"
        env["BENCH_GC"] = variant.gc
    cmd = [PYTHON, "-m", main, "run", "--until-caught-up"]
    try:
        done = run(cmd, env, setup.workdir / "logs", f"{variant.name}-{tag}", 7200, variant.root)
        done.check(variant.name)
    finally:
        shutil.rmtree(kv_dir, ignore_errors=True)
    result = json.loads(stats.read_text())
    if result["records"] != n:
        raise RuntimeError(f"{variant.name} wrote {result['records']} records, expected {n}")
    elapsed = result["last_write_at"] - result["first_write_at"]
    cpu = result["cpu_last"] - result["cpu_first"]
    stages = ", ".join(f"{name} {s:.1f} s" for name, s in sorted(result["stage_seconds"].items()))
    parts = done.peak_parts_mb
    memory = f"RSS at peak: anon {parts.get('anon', 0):.0f} MB, file {parts.get('file', 0):.0f} MB"
    return (
        n / elapsed, cpu / n * 1e6, done.max_rss_mb,
        f"{result['batches']} batches; {stages}; {memory}",
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__)
    parser.add_argument("--messages", type=int, default=500_000)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variant", action="append", required=True)
    args = parser.parse_args(argv)
    variants = [Variant.parse(text) for text in args.variant]

    from bench import data
    from harness.kafka import DEFAULT_VERSION, KafkaBroker, create_topic

    workdir = Path(tempfile.mkdtemp(prefix="connectors-ab-")).resolve()
    payload = data.payload(args.messages)
    broker = KafkaBroker(workdir / "broker", version=DEFAULT_VERSION, heap="1g")
    broker.start()
    setup = Setup(broker.bootstrap, workdir, payload, DEFAULT_VERSION)
    results: dict[str, list[tuple[float, float, float]]] = {v.name: [] for v in variants}
    try:
        topic = f"ab-p{args.partitions}-{args.messages}"
        create_topic(broker.bootstrap, topic, partitions=args.partitions)
        data.produce_file(broker.bootstrap, topic, args.partitions, payload)
        for round_no in range(1, args.rounds + 1):
            for variant in variants:
                rate, cpu, rss, where = run_variant(setup, variant, topic, args.messages)
                results[variant.name].append((rate, cpu, rss))
                print(f"round {round_no} {variant.name}: {rate:,.0f} msg/s, {cpu:.2f} CPU-s/1M, "
                      f"{rss:.0f} MB ({where})", flush=True)  # fmt: skip
    finally:
        broker.close()
        shutil.rmtree(workdir, ignore_errors=True)
    first = statistics.median(r for r, _, _ in results[variants[0].name])
    print(f"\n{args.messages:,} messages, {args.partitions} partition(s), {args.rounds} rounds")
    print("| variant | msg/s (median) | ratio to first | CPU-s per 1M | peak RSS MB |")
    print("|---|---:|---:|---:|---:|")
    for variant in variants:
        runs = results[variant.name]
        rate = statistics.median(r for r, _, _ in runs)
        cpu = statistics.median(c for _, c, _ in runs)
        print(f"| {variant.name} | {rate:,.0f} | {rate / first:.2f} | {cpu:.2f} "
              f"| {max(m for _, _, m in runs):.0f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`python -m bench`: the runtime against raw clients and Kafka Connect, in one run.

Starts a local Kafka 4.4 (KRaft, from Maven Central jars), preloads one topic per partition
count with the same zone-settings events (protobuf, about 150 bytes each), warms the page
cache, waits for a quiet machine, then measures every scenario `--runs` times, interleaved
(run 1 of every scenario, then run 2, ...), and reports medians:

  B1  raw aiokafka getmany() drain, counting only (tuned fetch sizes)
  B2  raw confluent-kafka consume(num_messages=...) drain, counting only
  B3  B1 plus protobuf decode of every record
  S1  the LMDB KV writer alone, fed the runtime's entries from memory
  R   `connector run --until-caught-up`: decode → pf_edge → LMDB, commit after every write
  R0  the same with pass-through bytes (no decode, no transform)
  J   Kafka Connect standalone, FileStreamSink, ByteArrayConverter, tasks = partitions

then latency at half of R's throughput, the bounded-memory check of issue 4, and (with
`--profile`) profiles of R. The table and ratios are printed and appended to
bench/RESULTS.md with the machine, the versions, the load average and the date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.procs import PYTHON, ROOT, base_env, run

SCENARIOS = ("B1", "B2", "B3", "S1", "R", "R0", "R0n", "R2", "R02", "R0n2", "Rb", "R0b", "J")
#: The connector scenarios: (pass-through?, run the --baseline checkout?, extra variables).
CONNECTORS: dict[str, tuple[bool, bool, dict[str, str]]] = {
    "R": (False, False, {}),
    "R0": (True, False, {}),
    "R0n": (True, False, {"KV_SYNC": "false"}),
    "R2": (False, False, {"WORKERS": "2"}),
    "R02": (True, False, {"WORKERS": "2"}),
    "R0n2": (True, False, {"KV_SYNC": "false", "WORKERS": "2"}),
    "Rb": (False, True, {}),
    "R0b": (True, True, {}),
}
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
TYPE_NAME = "edge.v1.ZoneSettingsChanged"
DESCRIPTIONS = {
    "B1": "aiokafka getmany() drain, count only",
    "B2": "confluent-kafka consume() drain, count only",
    "B3": "B1 + protobuf decode",
    "S1": "LMDB KV writer alone, entries from memory",
    "R": "connector: decode → pf_edge → LMDB, commit per batch",
    "R0": "connector: pass-through bytes → LMDB",
    "R0n": "R0 with KV_SYNC=false (no fsync, as J)",
    "R2": "R with WORKERS=2 (two group members, one pod)",
    "R02": "R0 with WORKERS=2",
    "R0n2": "R0n with WORKERS=2",
    "Rb": "R of the --baseline checkout",
    "R0b": "R0 of the --baseline checkout",
    "J": "Kafka Connect standalone, FileStreamSink",
}
RUNTIME_DIRS = ("connectors", "readers", "writers", "transforms")
TARGETS = {
    "R/serial": 0.8,
    "R/serial with T": 0.8,
    "R0/B1": 0.5,
    "R/J": 1.0,
    "R/B3": 0.25,
    "R/Rb": 2.0,
    "R0n/J": 1.0,
    "R2/B3": 0.4,
    "R0n2/J": 1.0,
}
#: Peak RSS a connector process may reach in the throughput scenarios (issue 19).
RSS_TARGET_MB = 200
#: Scenarios that need several partitions to mean anything (one per worker at least).
MULTI_PARTITION = frozenset({"R2", "R02", "R0n2"})


@dataclass
class Measured:
    scenario: str
    records: int
    elapsed_s: float
    cpu_s: float
    rss_mb: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.records / self.elapsed_s if self.elapsed_s > 0 else float("nan")


@dataclass
class Summary:
    scenario: str
    runs: list[Measured]

    @property
    def rate(self) -> float:
        return statistics.median(m.rate for m in self.runs)

    @property
    def rate_range(self) -> tuple[float, float]:
        rates = [m.rate for m in self.runs]
        return min(rates), max(rates)

    @property
    def elapsed_s(self) -> float:
        return statistics.median(m.elapsed_s for m in self.runs)

    @property
    def cpu_per_million(self) -> float:
        return statistics.median(m.cpu_s / m.records * 1e6 for m in self.runs)

    @property
    def rss_mb(self) -> float:
        return max(m.rss_mb for m in self.runs)


# --------------------------------------------------------------------------- machine


def load_average() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return one, five, fifteen


def wait_for_quiet(max_load: float, timeout_s: float) -> tuple[bool, float]:
    """Poll the 1-minute load average until it is below `max_load`; (quiet?, seconds waited)."""
    started = time.monotonic()
    last_print = 0.0
    while True:
        one = load_average()[0]
        waited = time.monotonic() - started
        if one < max_load:
            return True, waited
        if waited >= timeout_s:
            print(f"load still {one:.2f} after {waited:.0f} s; measuring anyway", flush=True)
            return False, waited
        if waited - last_print >= 30:
            print(f"waiting for load < {max_load} (now {one:.2f}, {waited:.0f} s)", flush=True)
            last_print = waited
        time.sleep(5)


def machine() -> dict[str, str]:
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return {
        "cpus": str(os.cpu_count()),
        "cpu_model": model,
        "ram": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
    }


def runtime_revision() -> str:
    """The commit the runtime was measured at, and whether its code had local changes."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", *RUNTIME_DIRS],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{head}{' with local changes to the runtime' if dirty else ''}"


def versions(kafka_version: str) -> dict[str, str]:
    def dist(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    found = {
        "python": platform.python_version(),
        "aiokafka": dist("aiokafka"),
        "confluent-kafka": dist("confluent-kafka"),
        "protobuf": dist("protobuf"),
        "lmdb": dist("lmdb"),
        "kafka": kafka_version,
    }
    try:
        import confluent_kafka

        found["librdkafka"] = confluent_kafka.libversion()[0]
    except ImportError:
        pass
    try:
        from google.protobuf.internal import api_implementation

        found["protobuf"] += f" ({api_implementation.Type()})"
    except ImportError:
        pass
    java = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False)
    found["java"] = (java.stderr.splitlines() or ["?"])[0].replace('"', "")
    return found


# ------------------------------------------------------------------------- scenarios


@dataclass
class Setup:
    bootstrap: str
    workdir: Path
    payload: Any  # bench.data.Payload
    kafka_version: str
    overrides: dict[str, str] = field(default_factory=dict)
    baseline: Path | None = None


def connector_env(
    setup: Setup, topic: str, *, passthrough: bool, kv_dir: Path, root: Path = ROOT
) -> dict[str, str]:
    """R's (or R0's) environment: the README's variables, defaults for everything else;
    `root` is the checkout whose runtime runs (the --baseline one for Rb and R0b)."""
    env = base_env(
        PYTHONPATH=str(root),
        CONNECTOR_NAME=f"bench-{'r0' if passthrough else 'r'}-{uuid.uuid4().hex[:8]}",
        TOPICS=topic,
        KAFKA_BOOTSTRAP_SERVERS=setup.bootstrap,
        KV_URL=f"lmdb:{kv_dir}",
        METRICS_PORT="0",
        TRANSFORM_MODULES="bench.plugin",
        WRITER="bench_kv",
    )
    if passthrough:
        env.update(TOPIC_SCHEMAS=f"{topic}=bytes", TRANSFORMS="")
    else:
        env.update(
            TOPIC_SCHEMAS=f"{topic}={TYPE_NAME}",
            PROTO_DESCRIPTOR_SET=str(root / "transforms" / "proto" / "edge.binpb"),
            TRANSFORMS="pf_edge",
        )
    env.update(setup.overrides)
    return env


def _json_line(text: str) -> dict[str, Any]:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            loaded: dict[str, Any] = json.loads(line)
            return loaded
    raise RuntimeError(f"no JSON result in output:\n{text[-2000:]}")


def _drain(setup: Setup, scenario: str, topic: str, partitions: int, n: int) -> Measured:
    logdir = setup.workdir / "logs"
    cmd = [
        PYTHON, "-m", "bench.drain", scenario, "--bootstrap", setup.bootstrap,
        "--topic", topic, "--partitions", str(partitions), "--expect", str(n),
    ]  # fmt: skip
    name = f"{scenario}-{topic}-{uuid.uuid4().hex[:6]}"
    done = run(cmd, base_env(), logdir, name, timeout=3600).check(scenario)
    result = _json_line(done.stdout)
    if result["records"] != n:
        raise RuntimeError(f"{scenario} counted {result['records']} records, expected {n}")
    return Measured(scenario, n, result["elapsed_s"], result["cpu_s"], done.max_rss_mb)


def _writer_alone(setup: Setup, topic: str, partitions: int, n: int) -> Measured:
    kv_dir = setup.workdir / f"kv-s1-{uuid.uuid4().hex[:8]}"
    env = connector_env(setup, topic, passthrough=False, kv_dir=kv_dir)
    env["WRITER"] = "kv"
    cmd = [
        PYTHON, "-m", "bench.drain", "S1", "--topic", topic, "--expect", str(n),
        "--payload", str(setup.payload.path), "--kv-dir", str(kv_dir), "--env", json.dumps(env),
    ]  # fmt: skip
    try:
        done = run(cmd, base_env(), setup.workdir / "logs", f"S1-{kv_dir.name}", 3600)
        result = _json_line(done.check("S1").stdout)
    finally:
        shutil.rmtree(kv_dir, ignore_errors=True)
    return Measured(
        "S1", result["records"], result["elapsed_s"], result["cpu_s"], done.max_rss_mb,
        {"transform_rate": result["records"] / result["transform_s"]},
    )  # fmt: skip


def merged_stats(stats: Path) -> dict[str, Any]:
    """The writer's stats of one run; with WORKERS=N, the N workers' files combined: records
    summed, the first and last write of any worker, CPU seconds summed over the workers
    (each worker's own, from its first write to its last)."""
    if stats.exists():
        loaded: dict[str, Any] = json.loads(stats.read_text())
        return loaded
    found = [json.loads(p.read_text()) for p in stats.parent.glob(f"{stats.name}.*")]
    # a process that wrote nothing (the WORKERS parent builds its writer, never writes)
    parts = [p for p in found if p["records"]] or found
    stages: dict[str, float] = {}
    for part in parts:
        for stage, seconds in part.get("stage_seconds", {}).items():
            stages[stage] = stages.get(stage, 0.0) + seconds
    return {
        "records": sum(p["records"] for p in parts),
        "batches": sum(p["batches"] for p in parts),
        "first_write_at": min(p["first_write_at"] for p in parts),
        "last_write_at": max(p["last_write_at"] for p in parts),
        "cpu_first": 0.0,
        "cpu_last": sum(p["cpu_last"] - p["cpu_first"] for p in parts),
        "stage_seconds": stages,
    }


def _connector(setup: Setup, topic: str, n: int, scenario: str) -> Measured:
    passthrough, baseline, extra = CONNECTORS[scenario]
    root = setup.baseline if baseline and setup.baseline is not None else ROOT
    tag = uuid.uuid4().hex[:8]
    kv_dir = setup.workdir / f"kv-{scenario}-{tag}"
    stats = setup.workdir / "logs" / f"{scenario}-{tag}.stats.json"
    env = connector_env(setup, topic, passthrough=passthrough, kv_dir=kv_dir, root=root)
    env.update(extra)
    env["BENCH_STATS_FILE"] = str(stats)
    cmd = [PYTHON, "-m", "connectors.cli", "run", "--until-caught-up"]
    try:
        logdir = setup.workdir / "logs"
        done = run(cmd, env, logdir, f"{scenario}-{topic}-{tag}", 7200, cwd=root)
        done.check(f"connector ({scenario})")
    finally:
        shutil.rmtree(kv_dir, ignore_errors=True)
    result = merged_stats(stats)
    if result["records"] != n:
        raise RuntimeError(f"{scenario} wrote {result['records']} records, expected {n}")
    return Measured(
        scenario,
        n,
        result["last_write_at"] - result["first_write_at"],
        result["cpu_last"] - result["cpu_first"],
        done.max_rss_mb,
        {
            "process_wall_s": done.wall_s,
            "process_cpu_s": done.cpu_s,
            "stage_seconds": result.get("stage_seconds", {}),
        },
    )


def _kafka_connect(setup: Setup, topic: str, partitions: int, n: int) -> Measured:
    from bench.connect import run_connect

    result = run_connect(
        setup.bootstrap, topic, partitions, n, setup.workdir / "connect",
        version=setup.kafka_version,
    )  # fmt: skip
    return Measured("J", n, result["elapsed_s"], result["cpu_s"], result["rss_mb"])


def measure(setup: Setup, scenario: str, topic: str, partitions: int, n: int) -> Measured:
    if scenario in ("B1", "B2", "B3"):
        return _drain(setup, scenario, topic, partitions, n)
    if scenario == "S1":
        return _writer_alone(setup, topic, partitions, n)
    if scenario in CONNECTORS:
        return _connector(setup, topic, n, scenario)
    return _kafka_connect(setup, topic, partitions, n)


# --------------------------------------------------------------------------- report


def ratios(summaries: Mapping[str, Summary]) -> dict[str, float]:
    def rate(name: str) -> float | None:
        return summaries[name].rate if name in summaries else None

    found: dict[str, float] = {}
    pairs = {
        "R/B1": ("R", "B1"),
        "R/B2": ("R", "B2"),
        "R0/B1": ("R0", "B1"),
        "R/J": ("R", "J"),
        "R0/J": ("R0", "J"),  # J neither decodes nor transforms: R0 is its like
        "R0n/J": ("R0n", "J"),  # ... and never fsyncs: R0n is its like
        "R/B3": ("R", "B3"),
        "R/Rb": ("R", "Rb"),
        "R2/B3": ("R2", "B3"),  # WORKERS=2 on the same topic
        "R2/R": ("R2", "R"),
        "R0n2/J": ("R0n2", "J"),
        "R0/R0b": ("R0", "R0b"),
    }
    for label, (a, b) in pairs.items():
        ra, rb = rate(a), rate(b)
        if ra is not None and rb is not None:
            found[label] = ra / rb
    r, b3, s1 = rate("R"), rate("B3"), rate("S1")
    if r is not None and b3 is not None and s1 is not None:
        found["serial bound (msg/s)"] = 1.0 / (1.0 / b3 + 1.0 / s1)
        found["R/serial"] = r / found["serial bound (msg/s)"]
        # The bound above leaves the transform out (S1 is fed finished entries); T is
        # pf_edge alone on decoded messages in memory, timed inside the S1 process.
        t = statistics.median(m.extra["transform_rate"] for m in summaries["S1"].runs)
        found["T: pf_edge alone (msg/s)"] = t
        found["serial bound with T (msg/s)"] = 1.0 / (1.0 / b3 + 1.0 / t + 1.0 / s1)
        found["R/serial with T"] = r / found["serial bound with T (msg/s)"]
    return found


def table(summaries: Mapping[str, Summary]) -> str:
    lines = [
        "| scenario | what | msg/s (median) | runs: min-max msg/s | first→last s "
        "| CPU-s per 1M msgs | peak RSS MB (largest process) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name in SCENARIOS:
        if name not in summaries:
            continue
        s = summaries[name]
        low, high = s.rate_range
        lines.append(
            f"| {name} | {DESCRIPTIONS[name]} | {s.rate:,.0f} | {low:,.0f}-{high:,.0f} "
            f"| {s.elapsed_s:.2f} | {s.cpu_per_million:.2f} | {s.rss_mb:.0f} |"
        )
    over = [n for n in CONNECTORS if n in summaries and summaries[n].rss_mb > RSS_TARGET_MB]
    lines.append("")
    lines.append(
        f"Peak RSS is each process's own high-water mark (VmHWM; for WORKERS=2 the largest of "
        f"the parent and its workers). Connector target ≤ {RSS_TARGET_MB} MB per process: "
        + (f"over in {', '.join(over)}" if over else "met by every connector scenario")
        + "."
    )
    return "\n".join(lines)


def ratio_lines(found: Mapping[str, float]) -> str:
    lines = []
    for label, value in found.items():
        if label == "serial bound (msg/s)":
            lines.append(f"- serial bound 1/(1/B3+1/S1): {value:,.0f} msg/s")
            continue
        if label == "T: pf_edge alone (msg/s)":
            lines.append(
                f"- T, the transform alone (pf_edge on decoded messages): {value:,.0f} msg/s"
            )
            continue
        if label == "serial bound with T (msg/s)":
            lines.append(f"- serial bound with the transform 1/(1/B3+1/T+1/S1): {value:,.0f} msg/s")
            continue
        target = TARGETS.get(label)
        note = ""
        if target is not None:
            note = f" (target ≥ {target}: {'met' if value >= target else 'missed'})"
        lines.append(f"- {label} = {value:.2f}{note}")
    return "\n".join(lines)


def stage_lines(summaries: Mapping[str, Summary]) -> str:
    """Where R's and R0's time went, from the runtime's own stage histograms (median run)."""
    lines = []
    for name in CONNECTORS:
        if name not in summaries:
            continue
        runs = sorted(summaries[name].runs, key=lambda m: m.elapsed_s)
        median = runs[len(runs) // 2]
        stages = median.extra.get("stage_seconds") or {}
        if not stages:
            continue
        parts = ", ".join(
            f"{stage} {seconds:.1f} s ({100 * seconds / median.elapsed_s:.0f}%)"
            for stage, seconds in stages.items()
        )
        lines.append(f"- {name} time by stage (its own histograms, median run): {parts}")
    return "\n".join(lines)


def _default(name: str) -> Any:
    from connectors.config.settings import RuntimeSettings

    return RuntimeSettings.model_fields[name].default


def fmt_load(load: tuple[float, float, float]) -> str:
    return " / ".join(f"{x:.2f}" for x in load)


# ------------------------------------------------------------------------------ main


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--messages", type=int, help="records per topic (default 5,000,000; --quick 200,000)"
    )
    parser.add_argument("--partitions", default="1,6", help="comma-separated partition counts")
    parser.add_argument("--runs", type=int, help="runs per scenario, median (3; --quick 1)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="defaults for a pipeline check: 200,000 messages, 1 run, 10 s latency, "
        "a 100,000-message backlog with a 10 s outage (explicit flags still win)",
    )
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help="subset of " + ",".join(SCENARIOS)
    )
    parser.add_argument(
        "--only",
        choices=["throughput", "latency", "memory", "profile"],
        action="append",
        help="run only these phases (repeatable); default: throughput, latency, memory",
    )
    parser.add_argument("--profile", action="store_true", help="also profile R (see --profiler)")
    parser.add_argument("--profiler", choices=["py-spy", "pyinstrument", "both"], default="both")
    parser.add_argument("--profile-messages", type=int, help="topic size to profile on")
    parser.add_argument("--profile-label", default="before", help="label in RESULTS.md")
    parser.add_argument(
        "--profile-passthrough", action="store_true", help="profile R0 instead of R"
    )
    parser.add_argument("--latency-seconds", type=float, help="30 (--quick 10)")
    parser.add_argument(
        "--latency-rate", type=float, help="offered msg/s (default: half of R's median)"
    )
    parser.add_argument("--memory-backlog", type=int, help="1,000,000 (--quick 100,000)")
    parser.add_argument("--memory-outage", type=float, help="writer down, s: 60 (--quick 10)")
    parser.add_argument("--memory-partitions", type=int, default=1)
    parser.add_argument("--max-load", type=float, default=1.5, help="wait for 1-min load below")
    parser.add_argument("--load-timeout", type=float, default=1800.0, help="s to wait for it")
    parser.add_argument("--workdir", type=Path, help="default: a new folder under /tmp")
    parser.add_argument("--keep", action="store_true", help="keep the workdir (logs, profiles)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--no-append", action="store_true", help="print only")
    parser.add_argument("--note", default="", help="a line added to the RESULTS.md entry")
    parser.add_argument("--kafka-version", default=None)
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another checkout of the runtime (e.g. `git worktree add /tmp/base <commit>`): "
        "scenarios Rb and R0b run its R and R0, interleaved with this one's",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a connector variable for R, R0, S1, latency and memory runs, e.g. "
        "BATCH_MAX_MESSAGES=2000 or KV_SYNC=false (repeatable; shown in RESULTS.md)",
    )
    args = parser.parse_args(argv)
    defaults = {
        "messages": (5_000_000, 200_000),
        "runs": (3, 1),
        "latency_seconds": (30.0, 10.0),
        "memory_backlog": (1_000_000, 100_000),
        "memory_outage": (60.0, 10.0),
    }
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    args.partition_counts = [int(p) for p in args.partitions.split(",") if p.strip()]
    args.scenario_list = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(args.scenario_list) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {sorted(unknown)}")
    if {"Rb", "R0b"} & set(args.scenario_list) and args.baseline is None:
        parser.error("scenarios Rb and R0b need --baseline")
    if args.baseline is not None:
        args.baseline = args.baseline.resolve()
    bad = [item for item in args.env if "=" not in item]
    if bad:
        parser.error(f"--env wants NAME=VALUE, not {bad}")
    args.overrides = dict(item.split("=", 1) for item in args.env)
    phases = set(args.only or ["throughput", "latency", "memory"])
    if args.profile:
        phases.add("profile")
    args.phases = phases
    return args


class Report:
    """Everything printed, also kept for RESULTS.md."""

    def __init__(self) -> None:
        self.sections: list[str] = []

    def add(self, text: str) -> None:
        print(text, flush=True)
        self.sections.append(text)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    from harness.kafka import DEFAULT_VERSION, KafkaBroker, create_topic

    kafka_version = args.kafka_version or DEFAULT_VERSION
    owned = args.workdir is None
    if args.workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix="connectors-bench-")).resolve()
    else:
        workdir = args.workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
    print(f"workdir {workdir}", flush=True)
    started_at = dt.datetime.now(dt.UTC)
    began = time.monotonic()
    report = Report()
    load_at_start = load_average()
    revision_at_start = runtime_revision()

    from bench import data

    payload = data.payload(args.messages)
    broker = KafkaBroker(workdir / "broker", version=kafka_version, heap="1g")
    broker.start()
    setup = Setup(broker.bootstrap, workdir, payload, kafka_version, args.overrides, args.baseline)
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    loads: dict[str, tuple[float, float, float]] = {"start": load_at_start}
    try:
        topics: dict[int, str] = {}
        needs_topics = bool(args.phases & {"throughput", "profile"})
        for partitions in args.partition_counts if needs_topics else []:
            topic = f"bench-p{partitions}-{args.messages}"
            create_topic(broker.bootstrap, topic, partitions=partitions)
            took = data.produce_file(broker.bootstrap, topic, partitions, payload)
            print(
                f"preloaded {topic}: {args.messages:,} records in {took:.1f} s "
                f"({args.messages / took:,.0f} msg/s with kcat)",
                flush=True,
            )
            topics[partitions] = topic
            # Warm the page cache (and the broker) with one untimed drain.
            _drain(setup, "B2", topic, partitions, args.messages)
        quiet, waited = wait_for_quiet(args.max_load, args.load_timeout)
        loads["measuring"] = load_average()
        results["quiet"] = quiet
        report.add(
            f"\nmeasuring at load average {fmt_load(loads['measuring'])} "
            f"(waited {waited:.0f} s for < {args.max_load}{'' if quiet else ', not reached'})"
        )

        r_rates: dict[int, float] = {}
        if "throughput" in args.phases:
            for partitions, topic in topics.items():
                summaries = throughput(setup, args, topic, partitions)
                results[f"throughput_p{partitions}"] = {
                    name: [vars(m) for m in s.runs] for name, s in summaries.items()
                }
                found = ratios(summaries)
                results[f"ratios_p{partitions}"] = found
                if "R" in summaries:
                    r_rates[partitions] = summaries["R"].rate
                report.add(
                    f"\n### {args.messages:,} messages, {partitions} partition"
                    f"{'s' if partitions > 1 else ''}, median of {args.runs}\n\n"
                    f"{table(summaries)}\n\n{ratio_lines(found)}\n{stage_lines(summaries)}"
                )
            loads["after throughput"] = load_average()

        if "latency" in args.phases:
            report.add(latency_phase(setup, args, r_rates, results))
        if "memory" in args.phases:
            report.add(memory_phase(setup, args, results))
        if "profile" in args.phases:
            report.add(profile_phase(setup, args, topics, results))
        loads["end"] = load_average()
    finally:
        broker.close()
        (workdir / "results.json").write_text(json.dumps(results, indent=2, default=str))
        if owned and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        elif args.keep or not owned:
            print(f"kept {workdir}", flush=True)

    minutes = (time.monotonic() - began) / 60
    revisions = (revision_at_start, runtime_revision())
    entry = results_entry(
        args, started_at, minutes, loads, payload, kafka_version, report, revisions
    )
    if not args.no_append:
        with args.results.open("a", encoding="utf-8") as out:
            out.write(entry)
        print(f"\nappended to {args.results}", flush=True)
    return 0


def throughput(
    setup: Setup, args: argparse.Namespace, topic: str, partitions: int
) -> dict[str, Summary]:
    names = [n for n in args.scenario_list if partitions > 1 or n not in MULTI_PARTITION]
    runs: dict[str, list[Measured]] = {name: [] for name in names}
    for run_no in range(1, args.runs + 1):
        for name in names:
            print(f"  p{partitions} run {run_no}/{args.runs} {name} ...", end=" ", flush=True)
            m = measure(setup, name, topic, partitions, args.messages)
            runs[name].append(m)
            print(
                f"{m.rate:,.0f} msg/s, {m.elapsed_s:.2f} s, "
                f"{m.cpu_s / m.records * 1e6:.2f} CPU-s/1M, {m.rss_mb:.0f} MB "
                f"(load {load_average()[0]:.2f})",
                flush=True,
            )
    return {name: Summary(name, ms) for name, ms in runs.items()}


def latency_phase(
    setup: Setup, args: argparse.Namespace, r_rates: Mapping[int, float], results: dict[str, Any]
) -> str:
    from bench.latency import run_latency

    lines = [
        "\n### Latency: produce timestamp → LMDB commit (R), at a fixed offered load\n",
        "| partitions | offered msg/s | achieved | records measured | p50 ms | p99 ms "
        "| max ms | connector peak RSS MB | connector CPU-s per 1M |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for partitions in args.partition_counts:
        rate = args.latency_rate or (r_rates[partitions] / 2 if partitions in r_rates else None)
        if rate is None:
            print(f"latency p{partitions}: no R throughput measured; use --latency-rate")
            continue
        env = connector_env(setup, "-", passthrough=False, kv_dir=setup.workdir / "unused")
        found = run_latency(
            setup.bootstrap, partitions, rate, args.latency_seconds, setup.payload,
            setup.workdir, env,
        )  # fmt: skip
        results[f"latency_p{partitions}"] = found
        lines.append(
            f"| {partitions} | {found['offered_rate']:,.0f} | {found['achieved_rate']:,.0f} "
            f"| {found['measured']:,} | {found['p50_ms']:.1f} | {found['p99_ms']:.1f} "
            f"| {found['max_ms']:.1f} | {found['rss_mb']:.0f} | {found['cpu_per_million']:.1f} |"
        )
    basis = (
        f"{args.latency_rate:,.0f} msg/s (--latency-rate)"
        if args.latency_rate
        else "half of R's median throughput at that partition count"
    )
    lines.append(
        f"\nOffered load: {basis}, for {args.latency_seconds:.0f} s; the first 2 s are "
        "left out. Target: p99 < 250 ms. CPU: the connector process's, start to stop, per "
        "million records produced."
    )
    return "\n".join(lines)


def memory_phase(setup: Setup, args: argparse.Namespace, results: dict[str, Any]) -> str:
    from bench import data
    from bench.memory import run_memory

    backlog = data.payload(args.memory_backlog)
    env = connector_env(setup, "-", passthrough=False, kv_dir=setup.workdir / "unused")
    found = run_memory(
        setup.bootstrap, args.memory_partitions, backlog, args.memory_outage, setup.workdir, env
    )
    results["memory"] = found
    verdict = "under" if found["peak_rss_mb"] < 250 else "OVER"
    return (
        "\n### Bounded memory (issue 4): writer down, backlog waiting\n\n"
        f"- backlog {found['backlog']:,} messages on {found['partitions']} partition(s); "
        f"writer (`flaky_kv`) down {found['outage_s']:.0f} s, "
        f"{found['writer_failures']} failed writes\n"
        f"- RSS during the outage: peak {found['peak_rss_outage_mb']:.0f} MB, "
        f"{found['rss_end_of_outage_mb']:.0f} MB at its end\n"
        f"- RSS while draining afterwards: peak {found['peak_rss_drain_mb']:.0f} MB "
        f"(drained in {found['drain_s']:.0f} s)\n"
        f"- **peak RSS of the connector process (VmHWM): "
        f"{found['peak_rss_mb']:.0f} MB**, {verdict} the 250 MB aim\n"
        f"- committed offsets cover the backlog: {found['complete']} "
        f"({found['committed']:,}/{found['backlog']:,})"
    )


def profile_phase(
    setup: Setup, args: argparse.Namespace, topics: Mapping[int, str], results: dict[str, Any]
) -> str:
    from bench import data, profile
    from harness.kafka import create_topic

    partitions = args.partition_counts[0]
    topic = topics.get(partitions)
    n = args.messages
    if args.profile_messages and args.profile_messages != args.messages:
        n = args.profile_messages
        topic = f"bench-profile-p{partitions}-{n}"
        create_topic(setup.bootstrap, topic, partitions=partitions)
        data.produce_file(setup.bootstrap, topic, partitions, data.payload(n))
    assert topic is not None
    out_dir = setup.workdir / "profile"
    out_dir.mkdir(exist_ok=True)
    name, passthrough = ("R0", True) if args.profile_passthrough else ("R", False)
    sections = [
        f"\n### Profile of {name} ({args.profile_label}): {n:,} messages, {partitions} partition(s)"
    ]
    tools: list[tuple[str, Callable[[dict[str, str], Path], tuple[str, Path]]]] = []
    if args.profiler in ("py-spy", "both"):
        tools.append(("py-spy (every thread, on-CPU samples)", profile.py_spy))
    if args.profiler in ("pyinstrument", "both"):
        tools.append(("pyinstrument (main thread, wall clock)", profile.pyinstrument))
    for label, tool in tools:
        kv_dir = out_dir / f"kv-{label[:4]}"
        env = connector_env(setup, topic, passthrough=passthrough, kv_dir=kv_dir)
        env["BENCH_STATS_FILE"] = str(out_dir / f"stats-{label[:4]}.json")
        summary, path = tool(env, out_dir)
        stats = json.loads(Path(env["BENCH_STATS_FILE"]).read_text())
        rate = stats["records"] / max(stats["last_write_at"] - stats["first_write_at"], 1e-9)
        saved = RESULTS.parent / "profiles"
        saved.mkdir(exist_ok=True)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M")
        keep = saved / f"{stamp}-{args.profile_label}-{path.name}.gz"
        with path.open("rb") as src, gzip.open(keep, "wb") as dst:
            shutil.copyfileobj(src, dst)
        results[f"profile_{label[:4]}"] = {"rate_under_profiler": rate, "file": str(keep)}
        sections.append(
            f"\n{label}; {name} ran at {rate:,.0f} msg/s under the profiler; full output "
            f"`{keep.relative_to(ROOT)}`\n\n```\n{summary}\n```"
        )
    return "\n".join(sections)


def results_entry(
    args: argparse.Namespace,
    started_at: dt.datetime,
    minutes: float,
    loads: Mapping[str, tuple[float, float, float]],
    payload: Any,
    kafka_version: str,
    report: Report,
    revisions: tuple[str, str],
) -> str:
    from bench.connect import connect_version

    m = machine()
    v = versions(kafka_version)
    if "J" in args.scenario_list:
        v["kafka connect"] = connect_version(kafka_version)
    load_text = "; ".join(f"{k} {fmt_load(x)}" for k, x in loads.items())
    mode = "quick" if args.quick else "full"
    head = [
        f"\n## {started_at:%Y-%m-%d %H:%M} UTC: {mode} run, {args.messages:,} messages, "
        f"partitions {args.partitions}, {args.runs} run(s) each\n",
        f"- command: `python -m bench {' '.join(sys.argv[1:])}` ({minutes:.0f} min)",
        f"- runtime measured: commit {revisions[0]}"
        + ("" if revisions[1] == revisions[0] else f" at the start, {revisions[1]} at the end"),
        f"- machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['ram']} RAM, Linux {m['kernel']}",
        "- versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- load average (1/5/15 min): {load_text}",
        f"- data: edge.v1.ZoneSettingsChanged, {payload.zones:,} zones (keys), values "
        f"{payload.value_bytes_min}-{payload.value_bytes_max} bytes, mean "
        f"{payload.value_bytes_mean:.0f}",
        "- R, R0: `connector run --until-caught-up`, defaults (BATCH_MAX_MESSAGES="
        f"{_default('batch_max_messages')}, BATCH_MAX_WAIT_MS={_default('batch_max_wait_ms')}, "
        "KV_SYNC=true), WRITER=bench_kv (the kv writer timed from inside); S1 uses the same "
        "batch size and KV_SYNC",
    ]
    if args.overrides:
        changed = ", ".join(f"{k}={v}" for k, v in args.overrides.items())
        head.append(f"- connector variables changed from the defaults (--env): {changed}")
    if args.note:
        head.append(f"- note: {args.note}")
    return "\n".join(head) + "\n" + "\n".join(report.sections) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())

"""Bounded memory while the writer is down (issue 4).

A backlog of `backlog` messages waits in a topic; `connector run --until-caught-up` starts with
the test writer `flaky_kv` (tests/fixtures/strict.py) failing with RetriableError while
`<FLAKY_DIR>/down` exists. After `outage_s` seconds of failures the file is removed, the
connector drains the backlog and exits. The connector's RSS is sampled from /proc every 100 ms
and its peak is the kernel's high-water mark (VmHWM, bench/procs.py); the group's committed
offsets are checked to cover the whole backlog at the end.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.data import Payload, produce_file
from bench.latency import committed_total
from bench.procs import PYTHON, Child
from harness.kafka import create_topic


def _wait_for_failure(failures: Path, child: Child, run_dir: Path) -> None:
    deadline = time.monotonic() + 120
    while not failures.exists():
        if time.monotonic() > deadline or not child.alive():
            raise RuntimeError(f"the writer never failed; see {run_dir}")
        time.sleep(0.05)


def run_memory(
    bootstrap: str,
    partitions: int,
    data: Payload,
    outage_s: float,
    workdir: Path,
    connector_env: Mapping[str, str],
) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    topic = f"bench-memory-p{partitions}-{tag}"
    create_topic(bootstrap, topic, partitions=partitions)
    produce_file(bootstrap, topic, partitions, data)
    run_dir = workdir / f"memory-{tag}"
    flaky = run_dir / "flaky"
    flaky.mkdir(parents=True)
    (flaky / "down").write_text("down\n")
    name = f"bench-memory-{tag}"
    env = {
        **connector_env,
        "CONNECTOR_NAME": name,
        "TOPICS": topic,
        "TOPIC_SCHEMAS": f"{topic}=edge.v1.ZoneSettingsChanged",
        "TRANSFORMS": "pf_edge",
        "TRANSFORM_MODULES": "tests.fixtures.strict",
        "WRITER": "flaky_kv",
        "FLAKY_DIR": str(flaky),
        "FLAKY_PARTITION": "0",
        "FLAKY_OFFSET": "0",
        "KV_URL": f"lmdb:{run_dir / 'kv'}",
        # Short backoff cap so the drain starts soon after the writer is back.
        "RETRY_MAX_MS": "2000",
    }
    child = Child(
        [PYTHON, "-m", "connectors.cli", "run", "--until-caught-up"],
        env,
        run_dir,
        "connector",
        sample_rss_every=0.1,
    )
    failures = flaky / "failures"
    finished = None
    try:
        _wait_for_failure(failures, child, run_dir)
        outage_started = time.monotonic() - child.started
        time.sleep(outage_s)
        (flaky / "down").unlink()
        outage_ended = time.monotonic() - child.started
        finished = child.wait(3600).check("connector (memory bound)")
    finally:
        if finished is None:
            child.stop(30)
    committed = committed_total(bootstrap, name, topic, partitions)
    during = [rss for t, rss in finished.rss_samples if outage_started <= t <= outage_ended]
    after = [rss for t, rss in finished.rss_samples if t > outage_ended]
    return {
        "partitions": partitions,
        "backlog": data.count,
        "outage_s": outage_s,
        "writer_failures": int(failures.read_text()),
        "peak_rss_outage_mb": max(during, default=float("nan")),
        "rss_end_of_outage_mb": during[-1] if during else float("nan"),
        "peak_rss_drain_mb": max(after, default=float("nan")),
        "peak_rss_mb": finished.max_rss_mb,
        "drain_s": finished.wall_s - outage_ended,
        "committed": committed,
        "complete": committed == data.count,
    }

"""`WORKERS=N` without a broker: the CPU count, the workers' environments, and how the
pod's `/metrics` and probes are combined from the workers' answers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics
from prometheus_client.parser import text_string_to_metric_families

from connectors.cli.supervisor import ended
from connectors.cli.workers import check_member_ids, worker_environment
from connectors.config.cpus import available_cpus
from connectors.config.pipeline import resolve
from connectors.core.errors import ConfigError
from connectors.observability.health import combine
from connectors.observability.health.gather import _Families

BASE = {"CONNECTOR_NAME": "c", "TOPICS": "t", "TOPIC_SCHEMAS": "t=bytes"}


@pytest.mark.parametrize(
    ("cpu_max", "cap"),
    [("max 100000\n", None), ("150000 100000\n", 1), ("50000 100000", 1), ("400000 100000", 4)],
)
def test_auto_is_the_affinity_capped_by_the_cgroup_quota(
    tmp_path: Path, cpu_max: str, cap: int | None
) -> None:
    path = tmp_path / "cpu.max"
    path.write_text(cpu_max)
    affinity = len(os.sched_getaffinity(0))
    assert available_cpus(path) == (affinity if cap is None else max(1, min(affinity, cap)))


def test_auto_without_a_cgroup_file_or_with_garbage_is_the_affinity(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    assert available_cpus(tmp_path / "missing") == affinity
    (tmp_path / "bad").write_text("lots")
    assert available_cpus(tmp_path / "bad") == affinity


def test_workers_setting() -> None:
    assert resolve(BASE).runtime.workers == 1
    assert resolve({**BASE, "WORKERS": "auto"}).runtime.workers == min(64, available_cpus())
    assert resolve({**BASE, "WORKERS": "64"}).runtime.workers == 64
    for bad in ("0", "65", "many", ""):
        with pytest.raises(ConfigError, match="WORKERS"):
            resolve({**BASE, "WORKERS": bad})


def test_each_worker_gets_its_own_static_member_id() -> None:
    env = {**BASE, "WORKERS": "3", "kafka_group_instance_id": "pod-a"}
    pipeline = resolve(env)
    first, last = (worker_environment(env, i, pipeline) for i in (0, 2))
    assert first["KAFKA_GROUP_INSTANCE_ID"] == "pod-a-0" and "kafka_group_instance_id" not in first
    assert last["KAFKA_GROUP_INSTANCE_ID"] == "pod-a-2" and last["WORKERS"] == "1"
    assert resolve(last).kafka.group_instance_id == "pod-a-2"
    plain = worker_environment(BASE, 1, resolve(BASE))
    assert "KAFKA_GROUP_INSTANCE_ID" not in plain


def test_a_static_member_id_too_long_for_its_suffix_is_a_config_error() -> None:
    long = {**BASE, "WORKERS": "12", "KAFKA_GROUP_INSTANCE_ID": "p" * 247}
    with pytest.raises(ConfigError, match="KAFKA_GROUP_INSTANCE_ID"):
        check_member_ids(resolve(long), 12)
    check_member_ids(resolve({**long, "KAFKA_GROUP_INSTANCE_ID": "p" * 246}), 12)


def test_how_a_worker_ended_is_said_in_words() -> None:
    assert ended(-9) == "was killed by SIGKILL"
    assert ended(1) == "exited with status 1"
    assert ended(0) == "exited with status 0"


def _exposition(records: int, lag: int, partition: str, paused: int) -> str:
    registry = CollectorRegistry()
    Info("connector_build", "build", registry=registry).info({"connector": "c"})
    Counter("connector_records_in", "in", ["connector"], registry=registry).labels("c").inc(records)
    seconds = Histogram("connector_stage_seconds", "s", ["stage"], registry=registry)
    seconds.labels("write").observe(0.2)
    lag_gauge = Gauge("connector_consumer_lag", "lag", ["partition"], registry=registry)
    lag_gauge.labels(partition).set(lag)
    Gauge("connector_paused_partitions", "p", registry=registry).set(paused)
    return openmetrics(registry).decode()


def _values(families: list[object]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))  # type: ignore[arg-type]
    from prometheus_client import generate_latest

    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_sum_counters_and_histograms_and_keep_partition_gauges_apart() -> None:
    merged = combine.metrics(
        [_exposition(100, 5, "0", 1), _exposition(250, 7, "1", 2), _exposition(0, 9, "1", 0)]
    )
    values = _values(merged)  # type: ignore[arg-type]
    assert values[("connector_records_in_total", (("connector", "c"),))] == 350
    assert values[("connector_stage_seconds_count", (("stage", "write"),))] == 3
    assert values[("connector_stage_seconds_bucket", (("le", "0.25"), ("stage", "write")))] == 3
    assert values[("connector_consumer_lag", (("partition", "0"),))] == 5
    assert values[("connector_consumer_lag", (("partition", "1"),))] == 9  # two reported it
    assert values[("connector_paused_partitions", ())] == 3
    assert values[("connector_build_info", (("connector", "c"),))] == 1


def _partition(p: int, reason: str) -> dict[str, object]:
    return {"topic": "t", "partition": p, "reason": reason, "committed": 1, "end": 1}


def _healthz(status: str, *partitions: dict[str, object], **extra: object) -> dict[str, object]:
    return {"status": status, "partitions": list(partitions), "error": None, "wedged": None} | extra


def test_healthz_is_the_union_of_partitions_and_the_worst_state() -> None:
    answers = [
        combine.Answer(0, 10, 200, _healthz("healthy", _partition(0, "idle"))),
        combine.Answer(
            1,
            11,
            503,
            _healthz(
                "unhealthy",
                _partition(1, "stuck"),
                wedged={"stage": "write", "for_s": 130.0},
                error="slow",
            ),
        ),
    ]
    status, body = combine.healthz(answers, "c", "g", 120.0)
    assert status == 503 and body["status"] == "unhealthy"
    assert [(p["partition"], p["reason"]) for p in body["partitions"]] == [
        (0, "idle"),
        (1, "stuck"),
    ]
    assert body["wedged"] == {"stage": "write", "for_s": 130.0, "worker": 1}
    assert body["error"] == "worker 1: slow"
    assert [w["partitions"] for w in body["workers"]] == [[["t", 0]], [["t", 1]]]
    both_healthy = [answers[0], combine.Answer(1, 11, 200, _healthz("healthy"))]
    assert combine.healthz(both_healthy, "c", "g", 120.0)[0] == 200


def test_a_worker_that_does_not_answer_makes_the_pod_unhealthy_unready_and_not_live() -> None:
    fine = combine.Answer(0, 10, 200, _healthz("healthy", _partition(0, "idle")))
    silent = combine.Answer(1, 11, None, {}, "TimeoutError")
    status, body = combine.healthz([fine, silent], "c", "g", 120.0)
    assert status == 503 and "worker 1: did not answer (TimeoutError)" in body["error"]
    assert body["workers"][1]["status"] == "not answering"
    ready = {"ready": True, "joined": True, "assigned_partitions": 3, "writer": "ok"}
    assert combine.readyz([combine.Answer(0, 10, 200, ready), silent])[0] == 503
    live = combine.Answer(0, 10, 200, {"live": True, "wedged": None, "blocked": None})
    assert combine.livez([live, silent])[0] == 503


def test_livez_fails_for_a_wedged_worker_and_names_a_blocked_one() -> None:
    waiting = {"stage": "write", "reason": "ConnectionError", "for_s": 40.0}
    blocked = combine.Answer(1, 11, 200, {"live": True, "wedged": None, "blocked": waiting})
    live = combine.Answer(0, 10, 200, {"live": True, "wedged": None, "blocked": None})
    assert combine.livez([live, blocked]) == (
        200,
        {"live": True, "wedged": None, "blocked": {**waiting, "worker": 1}},
    )
    stuck = {"stage": "transform", "for_s": 300.0}
    wedged = combine.Answer(0, 10, 503, {"live": False, "wedged": stuck, "blocked": None})
    status, body = combine.livez([wedged, blocked])
    assert status == 503 and body["wedged"] == {**stuck, "worker": 0}
    assert body["error"] == "worker 0: not live"


def test_a_worker_without_partitions_does_not_keep_the_pod_from_being_ready() -> None:
    def ready(assigned: int, writer: str = "ok", joined: bool = True) -> dict[str, object]:
        return {
            "ready": joined and writer == "ok",
            "joined": joined,
            "assigned_partitions": assigned,
            "writer": writer,
        }

    holding = combine.Answer(0, 10, 200, ready(2))
    idle = combine.Answer(1, 11, 200, ready(0))
    assert combine.readyz([holding, idle]) == (
        200,
        {"ready": True, "joined": True, "assigned_partitions": 2, "writer": "ok", "workers": 2},
    )
    broken = combine.Answer(1, 11, 503, ready(0, "X"))
    assert combine.readyz([holding, broken])[1]["writer"] == "worker 1: X"
    joining = combine.Answer(1, 11, 503, ready(0, joined=False))
    assert combine.readyz([holding, joining]) == (
        503,
        {"ready": False, "joined": False, "assigned_partitions": 2, "writer": "ok", "workers": 2},
    )

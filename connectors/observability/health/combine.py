"""The pod's answers from its workers' answers, when `WORKERS=N` runs N pipelines.

Each worker serves `/metrics` and the probes on a loopback port of its own; the parent
serves the pod's port and combines what the workers say, so that Prometheus and the
kubelet see one connector whatever N is, with the same endpoints and fields as one process:

- `/metrics`: samples with the same name and labels are combined: counters, histograms
  and gauges without a partition label (paused partitions, entries in flight) are summed;
  a gauge with a partition label (offsets, lag, last commit) belongs to the one worker
  holding that partition, so the highest value is kept if two report it across a
  rebalance; `_created` timestamps keep the earliest; anything else (the build info)
  keeps the highest.
- `/healthz`: the union of the workers' partitions, each partition once (the worse state
  if two report it), healthy only when every worker answered healthy; errors, the longest
  wedged stage and the longest blocked one are named with their worker; `workers` lists
  each one.
- `/readyz`: ready when every worker answered ready (joined the group, writer check
  passed; a worker that holds no partition is ready too); `assigned_partitions` summed.
- `/livez`: live when every worker answered live; the longest wedged and blocked stages
  named with their worker.
- `/status.json` (the status page's figures): records and records/s summed, the dead
  letters of all workers, newest first, the page's number of them kept.

A worker that does not answer makes the pod unhealthy, not ready and not live: a hole in
the pod must show.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from connectors.observability.health.judge import HEALTHY
from connectors.observability.health.recent import KEEP

__all__ = ["Answer", "healthz", "livez", "metrics", "readyz", "status"]

_SUMMED_TYPES = frozenset({"counter", "histogram", "summary", "gaugehistogram"})


@dataclass(frozen=True, slots=True)
class Answer:
    """What one worker answered to one probe: its HTTP status and JSON body, or why it
    gave none (`status` None)."""

    worker: int
    pid: int | None
    status: int | None
    body: dict[str, Any]
    error: str | None = None


def _combine(family: str, sample: Sample, value: float, seen: float) -> float:
    if sample.name.endswith("_created"):
        return min(value, seen)
    if family in _SUMMED_TYPES or (family == "gauge" and "partition" not in sample.labels):
        return value + seen
    return max(value, seen)


def metrics(texts: Iterable[str]) -> list[Metric]:
    """The workers' OpenMetrics expositions, combined into one set of families."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], Sample]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):  # type: ignore[no-untyped-call]
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(
                    family.name, family.documentation, family.type, family.unit
                )
                values[family.name] = {}
            found = values[family.name]
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                seen = found.get(key)
                if seen is None:
                    found[key] = Sample(sample.name, sample.labels, sample.value, None, None)
                    continue
                value = _combine(merged.type, sample, sample.value, seen.value)
                found[key] = Sample(sample.name, sample.labels, value, None, None)
    for name, merged in families.items():
        merged.samples = list(values[name].values())
    return list(families.values())


def _worse(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return b if a.get("reason") in HEALTHY and b.get("reason") not in HEALTHY else a


def _longest(
    found: dict[str, Any] | None, stage: dict[str, Any] | None, worker: int
) -> dict[str, Any] | None:
    """The stage (wedged or blocked) running the longest so far, named with its worker."""
    if stage is None or (found is not None and stage["for_s"] <= found["for_s"]):
        return found
    return {**stage, "worker": worker}


def _not_answered(answer: Answer) -> str:
    return f"worker {answer.worker}: did not answer ({answer.error})"


def healthz(
    answers: Sequence[Answer], connector: str, group: str, stuck_after_s: float
) -> tuple[int, dict[str, Any]]:
    """The pod's `/healthz` (status code, body) from each worker's."""
    partitions: dict[tuple[str, int], dict[str, Any]] = {}
    errors: list[str] = []
    wedged: dict[str, Any] | None = None
    waiting: dict[str, Any] | None = None
    workers: list[dict[str, Any]] = []
    healthy = bool(answers)
    for answer in answers:
        body = answer.body
        held = body.get("partitions") or []
        for p in held:
            key = (str(p["topic"]), int(p["partition"]))
            partitions[key] = _worse(partitions[key], p) if key in partitions else p
        if answer.status is None:
            errors.append(_not_answered(answer))
        elif body.get("error"):
            errors.append(f"worker {answer.worker}: {body['error']}")
        wedged = _longest(wedged, body.get("wedged"), answer.worker)
        waiting = _longest(waiting, body.get("blocked"), answer.worker)
        state = body.get("status", "not answering") if answer.status is not None else None
        healthy = healthy and state == "healthy"
        workers.append(
            {
                "worker": answer.worker,
                "pid": answer.pid,
                "status": state or "not answering",
                "partitions": [[p["topic"], p["partition"]] for p in held],
            }
        )
    body = {
        "status": "healthy" if healthy else "unhealthy",
        "connector": connector,
        "group": group,
        "stuck_after_s": stuck_after_s,
        "partitions": [partitions[key] for key in sorted(partitions)],
        "error": "; ".join(errors) or None,
        "wedged": wedged,
        "blocked": waiting,
        "workers": workers,
    }
    return (200 if healthy else 503), body


def readyz(answers: Sequence[Answer]) -> tuple[int, dict[str, Any]]:
    """The pod's `/readyz` from each worker's."""
    assigned = 0
    problems: list[str] = []
    joined = bool(answers)
    for answer in answers:
        if answer.status is None:
            problems.append(_not_answered(answer))
            joined = False
            continue
        assigned += int(answer.body.get("assigned_partitions", 0))
        joined = joined and bool(answer.body.get("joined"))
        writer = answer.body.get("writer", "no answer")
        if writer != "ok":
            problems.append(f"worker {answer.worker}: {writer}")
    ready = bool(answers) and joined and not problems
    body = {
        "ready": ready,
        "joined": joined,
        "assigned_partitions": assigned,
        "writer": "; ".join(problems) or "ok",
        "workers": len(answers),
    }
    return (200 if ready else 503), body


def livez(answers: Sequence[Answer]) -> tuple[int, dict[str, Any]]:
    """The pod's `/livez` from each worker's."""
    problems = []
    wedged: dict[str, Any] | None = None
    waiting: dict[str, Any] | None = None
    for answer in answers:
        if answer.status is None:
            problems.append(_not_answered(answer))
            continue
        wedged = _longest(wedged, answer.body.get("wedged"), answer.worker)
        waiting = _longest(waiting, answer.body.get("blocked"), answer.worker)
        if not answer.body.get("live"):
            problems.append(f"worker {answer.worker}: not live")
    live = bool(answers) and not problems
    body: dict[str, Any] = {"live": live, "wedged": wedged, "blocked": waiting}
    if not live:
        body["error"] = "; ".join(problems) or "no worker is running"
    return (200 if live else 503), body


def status(
    answers: Sequence[Answer], connector: str, group: str, keep: int = KEEP
) -> dict[str, Any]:
    """The pod's `/status.json` from each worker's: they run the same pipeline."""
    pipeline: dict[str, Any] = {}
    records, rate = 0, 0.0
    letters: list[dict[str, Any]] = []
    for answer in answers:
        body = answer.body if answer.status == 200 else {}
        pipeline = pipeline or body.get("pipeline") or {}
        records += int(body.get("records") or 0)
        rate += float(body.get("records_per_s") or 0.0)
        letters.extend(body.get("dead_letters") or [])
    letters.sort(key=lambda letter: float(letter.get("at") or 0.0), reverse=True)
    return {
        "connector": connector,
        "group": group,
        "pipeline": pipeline,
        "records": records,
        "records_per_s": round(rate, 1),
        "dead_letters": letters[:keep],
    }

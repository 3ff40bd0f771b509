"""Prometheus alert rules for connectors, generated from the metric definitions.

Series names come from the objects in `connectors.observability.metrics`, so the rules
cannot drift from what the runtime exports; `alerts/connector-rules.yml` is this module's
output for every connector
(`python -m connectors.observability.alerts > alerts/connector-rules.yml`), and
`connector alerts` prints the rules of one connector (CONNECTOR_NAME).

Severity says who is woken: `page` only where a person must act (a partition that stopped
moving, a writer or Kafka failing every attempt, a connector that commits nothing or is
gone); `chat` for what can wait for working hours (lag growing, dead letters, a writer that
fails now and then or is slow, offsets that cannot be read). Each rule names its runbook section in
docs/observability.md: `runbook` as a path in the repository, and `runbook_url`, the link
an Alertmanager receiver shows, when `ALERTS_RUNBOOK_BASE_URL` (or `--runbook-base-url`)
says where the docs are served (`<base>/observability.md#<section>`).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from prometheus_client import Counter, Info
from prometheus_client.metrics import MetricWrapperBase

from connectors.core.errors import ConfigError, Problem
from connectors.observability import metrics

__all__ = ["Rule", "Windows", "add_parser", "cmd_alerts", "render", "rules"]

RUNBOOK = "docs/observability.md"
_DURATION = re.compile(r"^(\d+)(s|m|h|d)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
_BASE_URL = re.compile(r"^https?://[^\s'#?]+$")


@dataclass(frozen=True)
class Windows:
    """How long each condition must hold. Defaults suit production; tests shorten them.

    `stuck` should exceed HEALTH_STUCK_AFTER_S (and a flushing writer's interval), so that
    Kubernetes restarts a stuck pod through /healthz before anyone is paged.
    """

    stuck: str = "10m"
    stuck_for: str = "5m"
    lag_growing: str = "15m"
    no_commit: str = "30m"
    writer_failing: str = "10m"
    kafka_failing: str = "10m"
    absent: str = "10m"
    write_slow: str = "15m"
    rate: str = "5m"
    writer_error_ratio: float = 0.05
    write_p99_s: float = 5.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, str) and not _DURATION.match(value):
                raise ValueError(f"{f.name}={value!r}: expected a Prometheus duration like 5m")


@dataclass(frozen=True)
class Rule:
    alert: str
    expr: str
    for_: str
    severity: str
    summary: str
    description: str
    anchor: str


def _series(metric: MetricWrapperBase, suffix: str = "") -> str:
    """The exported series name of `metric`, e.g. a counter's `_total`."""
    name = next(iter(metric.describe())).name
    if isinstance(metric, Counter):
        return f"{name}_total"
    return f"{name}_info" if isinstance(metric, Info) else f"{name}{suffix}"


def rules(connector: str | None = None, w: Windows | None = None) -> list[Rule]:
    """The rules, for one connector's series or (None) for every connector's."""
    w = w or Windows()
    only = f'connector="{connector}"' if connector else ""

    def sel(metric: MetricWrapperBase, *matchers: str, suffix: str = "") -> str:
        inner = ",".join(m for m in (only, *matchers) if m)
        return f"{_series(metric, suffix)}{{{inner}}}" if inner else _series(metric, suffix)

    lag = sel(metrics.CONSUMER_LAG)
    committed = sel(metrics.COMMITTED_OFFSET)
    last_commit = sel(metrics.LAST_COMMIT_TIME)
    write_retries = sel(metrics.RETRIES, 'stage="write"')
    writes = sel(metrics.STAGE_SECONDS, 'stage="write"', suffix="_count")
    dead = sel(metrics.RECORDS_DEAD_LETTERED)
    fetch_failures = sel(metrics.OFFSET_FETCH_FAILURES)
    kafka_retries = sel(metrics.RETRIES, 'stage=~"poll|commit"')
    commits = sel(metrics.COMMITS)
    write_buckets = sel(metrics.STAGE_SECONDS, 'stage="write"', suffix="_bucket")
    retry_rate = f"sum by (connector) (rate({write_retries}[{w.rate}]))"
    write_rate = f"sum by (connector) (rate({writes}[{w.rate}]))"
    found = [_absent(connector, w)] if connector else []
    return found + [
        Rule(
            "ConnectorPartitionStuck",
            f"(min_over_time({lag}[{w.stuck}]) > 0) and (changes({committed}[{w.stuck}]) == 0)",
            w.stuck_for,
            "page",
            "{{ $labels.connector }}: {{ $labels.topic }}[{{ $labels.partition }}] is stuck",
            f"Records have waited for {w.stuck} (at least {{{{ $value }}}} behind) and the "
            f"committed offset has not moved. Restarting did not help if this fires.",
            "stuck-partition",
        ),
        Rule(
            "ConnectorNoCommit",
            f"(time() - max by (connector) ({last_commit}) > {_seconds(w.no_commit)}) "
            f"and on (connector) (sum by (connector) ({lag}) > 0)",
            "0m",
            "page",
            "{{ $labels.connector }} has committed nothing for " + w.no_commit,
            "No partition of the connector committed while records wait.",
            "no-commit",
        ),
        Rule(
            "ConnectorWriterFailing",
            f"({retry_rate} > 0) unless on (connector) ({write_rate} > 0)",
            w.writer_failing,
            "page",
            "{{ $labels.connector }}: every write fails",
            f"Writes are retried and none succeeded for {w.writer_failing}; consumption is "
            "paused, lag grows, nothing is lost.",
            "writer-failing",
        ),
        Rule(
            "ConnectorKafkaFailing",
            f"(sum by (connector) (rate({kafka_retries}[{w.rate}])) > 0) "
            f"unless on (connector) (sum by (connector) (rate({commits}[{w.rate}])) > 0)",
            w.kafka_failing,
            "page",
            "{{ $labels.connector }}: Kafka polls or commits keep failing",
            f"Polls or commits have been retried for {w.kafka_failing} and nothing was "
            "committed: the brokers are unreachable or refuse the group. /livez says whether "
            "the broker answers.",
            "kafka-failing",
        ),
        Rule(
            "ConnectorLagGrowing",
            f"(sum by (connector, topic) (delta({lag}[{w.lag_growing}])) > 0) "
            f"and (sum by (connector, topic) ({lag}) > 0)",
            w.lag_growing,
            "chat",
            "{{ $labels.connector }}: lag on {{ $labels.topic }} keeps growing",
            f"Lag grew over every {w.lag_growing} window for {w.lag_growing}: the connector "
            "is slower than the producers.",
            "lag-growing",
        ),
        Rule(
            "ConnectorDeadLetters",
            f"sum by (connector, topic, reason) (increase({dead}[{w.rate}])) > 0",
            "0m",
            "chat",
            "{{ $labels.connector }}: records of {{ $labels.topic }} dead-lettered "
            "({{ $labels.reason }})",
            f"{{{{ $value | humanize }}}} records went to the dead-letter topic in {w.rate}.",
            "dead-letters",
        ),
        Rule(
            "ConnectorWriterErrors",
            f"({retry_rate} / ({retry_rate} + {write_rate})) > {w.writer_error_ratio:g}",
            w.rate,
            "chat",
            "{{ $labels.connector }}: {{ $value | humanizePercentage }} of writes fail",
            "Writes succeed only after retries; the writer's target is degraded.",
            "writer-errors",
        ),
        Rule(
            "ConnectorWriteSlow",
            f"histogram_quantile(0.99, sum by (connector, le) (rate({write_buckets}[{w.rate}]))) "
            f"> {w.write_p99_s:g}",
            w.write_slow,
            "chat",
            "{{ $labels.connector }}: writes are slow (p99 {{ $value | humanizeDuration }})",
            f"The slowest 1% of batch writes took over {w.write_p99_s:g}s for {w.write_slow}: "
            "the writer's target bounds throughput; lag will follow.",
            "write-slow",
        ),
        Rule(
            "ConnectorOffsetsUnavailable",
            f"sum by (connector) (increase({fetch_failures}[{w.rate}])) > 2",
            w.rate,
            "chat",
            "{{ $labels.connector }} cannot read its offsets from Kafka",
            "Lag and stuck detection are blind while this fires.",
            "offsets-unavailable",
        ),
    ]


def _absent(connector: str, w: Windows) -> Rule:
    """Only for one connector: `absent()` cannot name connectors it has never seen."""
    return Rule(
        "ConnectorAbsent",
        f'absent({_series(metrics.BUILD)}{{connector="{connector}"}})',
        w.absent,
        "page",
        "{{ $labels.connector }} exports no metrics",
        f"No pod of the connector has been scraped for {w.absent}: it is down, "
        "crash-looping (exit code 2 is a configuration error named in its log), or "
        "Prometheus cannot reach METRICS_PORT.",
        "absent",
    )


def _seconds(duration: str) -> int:
    found = _DURATION.match(duration)
    if found is None:
        raise ValueError(f"{duration!r}: expected a Prometheus duration like 5m")
    return int(found.group(1)) * _UNIT_S[found.group(2)]


def render(found: Sequence[Rule], group: str = "connector", runbook_base_url: str = "") -> str:
    """A Prometheus rules file; strings in single quotes, YAML's quoting without escapes."""
    base = runbook_base_url.rstrip("/")

    def q(text: str) -> str:
        return "'" + text.replace("'", "''") + "'"

    lines = [
        "# Generated by connectors.observability.alerts from "
        "connectors/observability/metrics.py; do not edit.",
        "groups:",
        f"  - name: {q(group)}",
        "    rules:",
    ]
    for r in found:
        lines += [
            f"      - alert: {r.alert}",
            f"        expr: {q(r.expr)}",
            f"        for: {r.for_}",
            "        labels:",
            f"          severity: {r.severity}",
            "        annotations:",
            f"          summary: {q(r.summary)}",
            f"          description: {q(r.description)}",
            f"          runbook: {q(f'{RUNBOOK}#{r.anchor}')}",
        ]
        if base:
            lines.append(f"          runbook_url: {q(f'{base}/observability.md#{r.anchor}')}")
    return "\n".join(lines) + "\n"


def cmd_alerts(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    name = None if args.all else (args.connector or environ.get("CONNECTOR_NAME"))
    if not args.all and not name:
        raise ConfigError([Problem("CONNECTOR_NAME", "a connector name (or --all)", None)])
    if name is not None and not _NAME.match(name):
        raise ConfigError([Problem("CONNECTOR_NAME", "letters, digits, '.', '_' or '-'", name)])
    try:
        windows = Windows(stuck=args.stuck, stuck_for=args.stuck_for)
    except ValueError as exc:
        raise ConfigError([Problem("--stuck/--stuck-for", str(exc), None)]) from exc
    base = args.runbook_base_url or environ.get("ALERTS_RUNBOOK_BASE_URL", "")
    if base and not _BASE_URL.match(base):
        expected = (
            "an http(s) URL where docs/ is served, e.g. https://git.example.com/connectors/docs"
        )
        raise ConfigError([Problem("ALERTS_RUNBOOK_BASE_URL", expected, base)])
    group = f"connector-{name}" if name else "connector"
    sys.stdout.write(render(rules(name, windows), group=group, runbook_base_url=base))
    return 0


def add_parser(subparsers: Any) -> None:
    """Register `connector alerts` on the CLI's subparsers."""
    p = subparsers.add_parser("alerts", help="print Prometheus alert rules for this connector")
    p.add_argument("--connector", help="connector name (default: CONNECTOR_NAME)")
    p.add_argument("--all", action="store_true", help="rules matching every connector")
    p.add_argument("--stuck", default=Windows.stuck, help="unmoving committed offset window")
    p.add_argument("--stuck-for", default=Windows.stuck_for, help="how long before paging")
    p.add_argument(
        "--runbook-base-url",
        default="",
        help="where docs/ is served; adds runbook_url (default: ALERTS_RUNBOOK_BASE_URL)",
    )
    p.set_defaults(handler=cmd_alerts)


if __name__ == "__main__":
    import os

    top = argparse.ArgumentParser(prog="python -m connectors.observability.alerts")
    add_parser(top.add_subparsers(dest="command", required=True))
    parsed = top.parse_args(["alerts", "--all", *sys.argv[1:]])
    sys.exit(cmd_alerts(parsed, dict(os.environ)))

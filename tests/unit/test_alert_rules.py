"""The shipped alert rules and dashboard: valid for Prometheus, tested with promtool, and
generated from (and only naming) the metrics the runtime declares."""

from __future__ import annotations

import argparse
import io
import json
import re
import shutil
import subprocess
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import yaml
from prometheus_client import Counter, Histogram

from connectors.core.errors import ConfigError
from connectors.observability import alerts, metrics
from tests.conftest import ROOT

RULES = ROOT / "alerts" / "connector-rules.yml"
RULE_TESTS = sorted((ROOT / "alerts" / "tests").glob("*.test.yml"))
ONE_CONNECTOR = ROOT / "alerts" / "tests" / "audit.rules.yml"
DASHBOARD = ROOT / "dashboards" / "connector.json"
ALERTMANAGER = ROOT / "alerts" / "alertmanager-example.yml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool not found: apt-get install prometheus (scripts/setup does)"
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, check=False)


def declared_series() -> set[str]:
    """Every series name the runtime can export, with the suffixes Prometheus sees."""
    names: set[str] = set()
    for value in vars(metrics).values():
        describe = getattr(value, "describe", None)
        if describe is None or not hasattr(value, "_labelnames"):
            continue
        base = next(iter(describe())).name
        if isinstance(value, Counter):
            names |= {f"{base}_total", f"{base}_created"}
        elif isinstance(value, Histogram):
            names |= {f"{base}_bucket", f"{base}_count", f"{base}_sum", f"{base}_created"}
        else:
            names |= {base, f"{base}_info"}
    return names


def series_in(expr: str) -> set[str]:
    return set(re.findall(r"\b(connector_[a-z_]+)\b", expr))


def test_the_shipped_rules_are_the_generated_ones() -> None:
    assert RULES.read_text() == alerts.render(alerts.rules()), (
        "alerts/connector-rules.yml is stale: python -m connectors.observability.alerts > "
        "alerts/connector-rules.yml"
    )
    one = alerts.render(alerts.rules("audit"), group="connector-audit")
    assert ONE_CONNECTOR.read_text() == one, (
        "alerts/tests/audit.rules.yml is stale: connector alerts --connector audit > it"
    )


def test_promtool_checks_the_rules() -> None:
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alerts.rules())} rules found" in done.stdout


def test_promtool_unit_tests_pass() -> None:
    assert RULE_TESTS, "no promtool tests in alerts/tests"
    done = promtool("test", "rules", *map(str, RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_has_a_promtool_test_that_makes_it_fire() -> None:
    text = "\n".join(path.read_text() for path in RULE_TESTS)
    for rule in alerts.rules("audit"):
        assert re.search(rf"alertname: {rule.alert}\n\s+exp_alerts:\n\s+- exp_labels", text), (
            f"{rule.alert} is never shown firing in alerts/tests"
        )


def test_rules_name_only_declared_series() -> None:
    known = declared_series()
    for rule in alerts.rules():
        assert series_in(rule.expr) <= known, (rule.alert, series_in(rule.expr) - known)


def test_rules_for_one_connector_select_only_its_series(tmp_path: Path) -> None:
    for rule in alerts.rules("audit-sync"):
        names = re.findall(r"\b(connector_[a-z_]+)(\{[^}]*\})?", rule.expr)
        assert names and all('connector="audit-sync"' in selector for _, selector in names), rule
    path = tmp_path / "one.yml"
    path.write_text(alerts.render(alerts.rules("audit-sync")))
    done = promtool("check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_pages_only_what_needs_a_person() -> None:
    severity = {rule.alert: rule.severity for rule in alerts.rules("audit")}
    assert {a for a, s in severity.items() if s == "page"} == {
        "ConnectorAbsent",
        "ConnectorPartitionStuck",
        "ConnectorWriterFailing",
        "ConnectorKafkaFailing",
        "ConnectorNoCommit",
    }
    assert set(severity.values()) == {"page", "chat"}
    routing = ALERTMANAGER.read_text()
    assert 'severity="page"' in routing and "pagerduty_configs" in routing
    for alert in severity:
        assert alert in routing, f"{alert} missing from the Alertmanager example's notes"


def test_connector_alerts_prints_rules_for_connector_name(tmp_path: Path) -> None:
    top = argparse.ArgumentParser()
    alerts.add_parser(top.add_subparsers(dest="command"))
    out = io.StringIO()
    args = top.parse_args(["alerts", "--stuck", "20m"])
    with redirect_stdout(out):
        assert args.handler(args, {"CONNECTOR_NAME": "edge-sync"}) == 0
    text = out.getvalue()
    assert 'connector="edge-sync"' in text and "[20m]" in text
    (tmp_path / "printed.yml").write_text(text)
    done = promtool("check", "rules", str(tmp_path / "printed.yml"))
    assert done.returncode == 0, done.stdout + done.stderr

    with pytest.raises(ConfigError):
        args.handler(args, {})
    bad = top.parse_args(["alerts", "--stuck", "soon"])
    with pytest.raises(ConfigError):
        bad.handler(bad, {"CONNECTOR_NAME": "edge-sync"})


def test_runbook_url_links_each_rule_to_its_section_from_a_configured_base() -> None:
    top = argparse.ArgumentParser()
    alerts.add_parser(top.add_subparsers(dest="command"))
    args = top.parse_args(["alerts", "--all"])
    out = io.StringIO()
    base = "https://git.example.com/platform/connectors/-/blob/main/docs/"
    with redirect_stdout(out):
        assert args.handler(args, {"ALERTS_RUNBOOK_BASE_URL": base}) == 0
    found = yaml.safe_load(out.getvalue())["groups"][0]["rules"]
    anchors = set(
        re.findall(r'<a id="([\w-]+)"></a>', (ROOT / "docs/observability.md").read_text())
    )
    assert len(found) == len(alerts.rules())
    for rule in found:
        url = rule["annotations"]["runbook_url"]
        prefix = "https://git.example.com/platform/connectors/-/blob/main/docs/observability.md#"
        assert url.startswith(prefix), url
        assert url.removeprefix(prefix) in anchors, url
    flagged = top.parse_args(["alerts", "--all", "--runbook-base-url", "http://docs.internal"])
    with redirect_stdout(io.StringIO()) as printed:
        flagged.handler(flagged, {})
    assert "runbook_url: 'http://docs.internal/observability.md#" in printed.getvalue()
    with pytest.raises(ConfigError, match="ALERTS_RUNBOOK_BASE_URL"):
        args.handler(args, {"ALERTS_RUNBOOK_BASE_URL": "docs/observability.md"})


def dashboard_exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    found = [a["expr"] for a in board["annotations"]["list"]]
    for panel in board["panels"]:
        found += [target["expr"] for target in panel.get("targets", [])]
    return found


def test_dashboard_names_only_declared_series_and_covers_the_essentials() -> None:
    exprs = dashboard_exprs()
    used = set().union(*map(series_in, exprs))
    assert used <= declared_series(), used - declared_series()
    for essential in (
        "connector_records_in_total",
        "connector_consumer_lag",
        "connector_stage_seconds_bucket",
        "connector_records_dead_lettered_total",
        "connector_retries_total",
    ):
        assert essential in used, essential


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses every panel query, wrapped as a recording rule."""
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for n, expr in enumerate(dashboard_exprs()):
        concrete = expr.replace("$__rate_interval", "5m").replace("$connector", "x")
        lines += [f"      - record: dashboard:query:{n}", f"        expr: {json.dumps(concrete)}"]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text("\n".join(lines) + "\n")
    done = promtool("check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr

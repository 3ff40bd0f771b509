"""Docs that name what the code defines stay in step with it: the alert table of
docs/patterns.md lists every rule `connector alerts` prints (with its severity), and the
README names every runnable example of examples/."""

from __future__ import annotations

import re
from pathlib import Path

from connectors.observability import alerts

ROOT = Path(__file__).resolve().parents[2]


def _alert_table(doc: str) -> dict[str, str]:
    rows = re.findall(r"^\| (Connector\w+) \| (\w+) \|", doc, flags=re.MULTILINE)
    return dict(rows)


def test_patterns_lists_every_alert_with_its_severity() -> None:
    table = _alert_table((ROOT / "docs" / "patterns.md").read_text())
    rules = {rule.alert: rule.severity for rule in alerts.rules("any")}
    assert table == rules


def test_observability_has_a_runbook_section_per_alert() -> None:
    doc = (ROOT / "docs" / "observability.md").read_text()
    sections = set(re.findall(r"^### (Connector\w+)$", doc, flags=re.MULTILINE))
    assert {rule.alert for rule in alerts.rules("any")} <= sections


def test_readme_names_every_example() -> None:
    readme = (ROOT / "README.md").read_text()
    examples = sorted(p.name for p in (ROOT / "examples").iterdir() if p.is_dir())
    assert examples
    missing = [name for name in examples if f"examples/{name}" not in readme]
    assert not missing, f"README does not name examples {missing}"

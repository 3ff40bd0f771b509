"""The `--until-caught-up` bar: drawn on a terminal, plain lines anywhere else; `rich` is
loaded only when a bar is drawn (every connector process would carry it otherwise)."""

from __future__ import annotations

import io
import subprocess
import sys

from connectors.observability.progress_bar import Bar, reporter


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_bar_with_the_counts() -> None:
    out = Terminal()
    report = reporter(out)
    assert isinstance(report, Bar)
    report("a line above the bar")
    report.show(1_500, 3_000, 750.0, 6, finished=True)
    drawn = out.getvalue()
    assert "a line above the bar" in drawn
    assert "50%" in drawn and "caught up" in drawn and "6 partitions" in drawn


def test_anything_else_gets_plain_lines() -> None:
    out = io.StringIO()
    report = reporter(out)
    assert not isinstance(report, Bar)
    report("caught up: 3,000 records")
    assert out.getvalue() == "caught up: 3,000 records\n"


def test_running_a_connector_does_not_load_rich_or_yaml() -> None:
    code = (
        "import sys, connectors.cli.main; "
        "print(sorted(m for m in ('rich', 'yaml') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"

"""docs/reliability.md carries the "bad input" section as tests/faults/bad_input.md has it.

The page is rewritten by the fault suite (tests/faults/report.py), which appends that file;
this test keeps the committed page and its source from drifting between fault-suite runs.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_reliability_page_holds_the_bad_input_section() -> None:
    section = (ROOT / "tests" / "faults" / "bad_input.md").read_text(encoding="utf-8").rstrip()
    page = (ROOT / "docs" / "reliability.md").read_text(encoding="utf-8")
    assert section in page, "run: python -m tests.faults.bad_input_sync"


def test_every_hostile_case_file_exists() -> None:
    names = {p.name for p in (ROOT / "tests" / "hostile").glob("test_*.py")}
    assert len(names) >= 8, sorted(names)

"""Copy tests/faults/bad_input.md into docs/reliability.md without a fault-suite run."""

from __future__ import annotations

from tests.faults.report import BAD_INPUT, DOC

MARK = "\n<!-- fault-suite-data"


def main() -> None:
    page = DOC.read_text(encoding="utf-8")
    section = BAD_INPUT.read_text(encoding="utf-8").rstrip()
    head, sep, data = page.partition(MARK)
    head = head.split("\n## Bad input", 1)[0].rstrip()
    DOC.write_text(f"{head}\n\n{section}\n{sep}{data}", encoding="utf-8")


if __name__ == "__main__":
    main()

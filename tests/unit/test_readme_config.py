"""The README's configuration table is exactly what `connector config --markdown` prints.

When this fails, regenerate the block between the `config-table` markers:
`connector config --readme README.md`.
"""

from __future__ import annotations

import difflib
import io
import re
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from connectors.cli import config_table, main
from connectors.config.settings import env_name

README = Path(__file__).resolve().parents[2] / "README.md"
CELL_SEPARATOR = re.compile(r"(?<!\\)\|")


def _readme_table() -> str:
    found = config_table.table_in(README.read_text())
    assert found is not None, "README.md needs one config-table:start/end block"
    return found


def test_the_readme_table_is_the_generated_one() -> None:
    written, generated = _readme_table(), config_table.markdown()
    diff = "".join(
        difflib.unified_diff(
            written.splitlines(keepends=True),
            generated.splitlines(keepends=True),
            "README.md (config-table block)",
            "connector config --markdown",
        )
    )
    assert not diff, (
        "README.md's configuration table is stale; regenerate it with "
        f"`connector config --readme README.md`:\n{diff}"
    )


def test_the_command_prints_the_same_table() -> None:
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["config", "--markdown"], environ={})
    assert code == 0
    assert out.getvalue() == config_table.markdown()


def test_readme_rewrites_only_the_block(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    before, after = "# Title\n\ntext before\n\n", "\ntext after\n"
    start = "<!-- config-table:start (generated) -->\n"
    page.write_text(f"{before}{start}| old | table |\n<!-- config-table:end -->{after}")
    assert main(["config", "--readme", str(page)], environ={}) == 0
    written = page.read_text()
    assert written == f"{before}{start}{config_table.markdown()}<!-- config-table:end -->{after}"
    assert main(["config", "--readme", str(page)], environ={}) == 0
    assert page.read_text() == written


def test_readme_without_a_block_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "page.md"
    page.write_text("# no block here\n")
    assert main(["config", "--readme", str(page)], environ={}) == 1
    assert page.read_text() == "# no block here\n"
    assert "no single config-table:start/end block" in capsys.readouterr().err


def test_the_plain_listing_has_one_line_per_variable() -> None:
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["config"], environ={}) == 0
    variables = [line.split("\t")[0] for line in out.getvalue().splitlines()]
    assert variables == [row.variable for row in config_table.rows()]
    assert {"CONNECTOR_NAME", "KAFKA_BOOTSTRAP_SERVERS", "SHUTDOWN_GRACE_S", "KV_SYNC"} <= set(
        variables
    )


def test_every_line_of_the_table_is_a_row_of_four_cells() -> None:
    """One blank or malformed line ends a Markdown table: every row after it is stray text."""
    lines = config_table.markdown().splitlines()
    assert all(line.startswith("| ") and line.endswith(" |") for line in lines[2:]), lines
    assert {len(CELL_SEPARATOR.split(line)) for line in lines} == {6}


def test_every_setting_of_the_runtime_is_in_the_table() -> None:
    variables = {row.variable for row in config_table.rows()}
    for model in config_table.models():
        for field in model.model_fields:
            assert env_name(model, field) in variables
    for prefix in ("KAFKA_", "RETRY_", "SHUTDOWN_", "DLQ_", "LOG_", "HEALTH_", "OTEL_", "KV_"):
        assert any(name.startswith(prefix) for name in variables), prefix


def test_every_variable_says_what_it_does() -> None:
    missing = [row.variable for row in config_table.rows() if not row.meaning]
    assert not missing, f"add a meaning for {missing} to MEANINGS in connectors/cli/config_table.py"


def test_no_meaning_or_default_names_a_variable_that_does_not_exist() -> None:
    variables = {row.variable for row in config_table.rows()}
    assert set(config_table.MEANINGS) <= variables, set(config_table.MEANINGS) - variables
    assert set(config_table.DERIVED_DEFAULTS) <= variables


def test_secrets_are_marked_and_the_store_warning_is_kept() -> None:
    rows = {row.variable: row for row in config_table.rows()}
    assert config_table.SECRET_NOTE in rows["KAFKA_SASL_PASSWORD"].meaning
    assert config_table.SECRET_NOTE in rows["KAFKA_SSL_KEY_PASSWORD"].meaning
    assert "power loss" in rows["KV_SYNC"].meaning
    assert rows["CONNECTOR_NAME"].default == "required"
    assert rows["DLQ_TOPIC"].default == "`<CONNECTOR_NAME>.dlq`"

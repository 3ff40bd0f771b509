"""The import-linter contracts in pyproject.toml bite: each rule, run on a small tree shaped
like this project, keeps a clean tree and reports a tree that breaks it, by the rule's name.

`scripts/test` runs the same contracts on the real code (`lint-imports`); these tests pin
what the rules mean, so that a contract weakened by accident (a wrong module name, a wildcard
that matches nothing) is noticed rather than silently kept.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

LAYERS = [
    "connectors.cli",
    "connectors.runtime",
    "connectors.producer",
    "connectors.observability",
    "connectors.kafka",
    "connectors.config",
    "connectors.core",
]

# A tree where every package imports only what the rules allow, one module per layer.
CLEAN = {
    "connectors/__init__.py": "from connectors.core import records\n",
    "connectors/core/__init__.py": "",
    "connectors/core/records.py": "import dataclasses\n",
    "connectors/config/__init__.py": "",
    "connectors/config/settings.py": "import pydantic\nfrom connectors.core import records\n",
    "connectors/kafka/__init__.py": "import aiokafka\nfrom connectors.config import settings\n",
    "connectors/kafka/errors.py": "import aiokafka\n",
    "connectors/observability/__init__.py": "import prometheus_client\nimport opentelemetry\n"
    "from connectors import kafka\n",
    "connectors/producer/__init__.py": "from connectors import observability\n",
    "connectors/runtime/__init__.py": "from connectors import observability\n",
    "connectors/cli/__init__.py": "from connectors import runtime\n",
    "connectors/testing/__init__.py": "from connectors.core import records\n"
    "from connectors.config import settings\n",
    "readers/__init__.py": "",
    "readers/kafka.py": "from connectors import records\nfrom connectors.kafka import aiokafka\n",
    "writers/__init__.py": "",
    "writers/kafka.py": "from connectors import records\nfrom connectors.kafka import aiokafka\n",
    "writers/kv.py": "from connectors import records\n",
    "transforms/__init__.py": "",
    "transforms/identity.py": "import connectors\n",
}

CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
NAMES = {contract["id"]: contract["name"] for contract in CONFIG["contracts"]}
SHORT = {
    "layers": "layers",
    "no-clients": "core-config-no-clients",
    "kit-imports": "test-kit-beside",
    "kit-unused": "test-kit-unused-by-runtime",
    "plugins": "plugins-public-api",
}

# (a module added to the clean tree, its text, the contracts it must break). An import of a
# higher layer from core or config also breaks the client rule: the higher layers import the
# client libraries, and indirect imports count.
VIOLATIONS = [
    ("connectors/core/bad.py", "from connectors.runtime import x\n", {"layers", "no-clients"}),
    ("connectors/config/bad.py", "import connectors.observability\n", {"layers", "no-clients"}),
    ("connectors/config/bad.py", "import connectors.kafka\n", {"layers", "no-clients"}),
    ("connectors/observability/bad.py", "from connectors.cli import x\n", {"layers"}),
    ("connectors/kafka/bad.py", "from connectors.observability import x\n", {"layers"}),
    ("connectors/runtime/bad.py", "from connectors.cli import x\n", {"layers"}),
    ("connectors/core/bad.py", "import aiokafka\n", {"no-clients"}),
    ("connectors/config/bad.py", "from prometheus_client import Counter\n", {"no-clients"}),
    ("connectors/config/bad.py", "from opentelemetry import trace\n", {"no-clients"}),
    ("connectors/testing/bad.py", "from connectors.kafka import x\n", {"kit-imports"}),
    ("connectors/testing/bad.py", "import prometheus_client\n", {"kit-imports"}),
    ("connectors/runtime/bad.py", "from connectors.testing import x\n", {"kit-unused"}),
    ("connectors/cli/bad.py", "import connectors.testing\n", {"kit-unused"}),
    ("writers/bad.py", "from connectors.testing import x\n", {"kit-unused", "plugins"}),
    ("transforms/bad.py", "from connectors.core.records import Record\n", {"plugins"}),
    ("writers/bad.py", "from connectors.config.settings import Settings\n", {"plugins"}),
    ("transforms/bad.py", "from connectors.kafka import translate\n", {"plugins"}),
    ("readers/other.py", "import connectors.kafka\n", {"plugins"}),
    (
        "writers/kafka.py",
        CLEAN["writers/kafka.py"] + "from connectors.kafka.errors import translate\n",
        {"plugins"},
    ),
]


def _tree(root: Path, extra: dict[str, str]) -> None:
    for name, text in {**CLEAN, **extra}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")


def _lint(root: Path) -> tuple[int, str]:
    # Wide columns: a contract's name is printed on one line, as CI shows it.
    env = {**os.environ, "PYTHONPATH": str(root), "COLUMNS": "400", "NO_COLOR": "1"}
    done = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def test_the_layers_are_the_documented_order() -> None:
    layers = [c for c in CONFIG["contracts"] if c["id"] == "layers"]
    assert layers and layers[0]["layers"] == LAYERS
    assert CONFIG["include_external_packages"] is True
    assert set(SHORT.values()) == set(NAMES)


def test_scripts_test_runs_the_contracts() -> None:
    assert "lint-imports" in (ROOT / "scripts" / "test").read_text()


def test_a_tree_that_follows_the_rules_keeps_every_contract(tmp_path: Path) -> None:
    _tree(tmp_path, {})
    code, output = _lint(tmp_path)
    assert code == 0, output
    assert "BROKEN" not in output
    # The clean tree really is this one, not the installed project.
    assert "connectors.core.bad" not in output


@pytest.mark.parametrize(("module", "text", "contracts"), VIOLATIONS)
def test_a_forbidden_import_breaks_its_contract_by_name(
    tmp_path: Path, module: str, text: str, contracts: set[str]
) -> None:
    _tree(tmp_path, {module: text})
    code, output = _lint(tmp_path)
    assert code == 1, output
    broken = {short for short, id_ in SHORT.items() if f"{NAMES[id_]} BROKEN" in output}
    assert broken == contracts, output
    assert module.removesuffix(".py").replace("/", ".") in output

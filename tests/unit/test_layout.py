"""The code stays readable as it grows: small modules, short functions, documents that name
files which exist, and no wording a reader cannot place.

- no module under connectors/, readers/, writers/, transforms/ over 400 lines (generated
  protobuf modules aside);
- no function over 60 lines, not counting its docstring nor literal data tables in it (a
  mapping or list written out is read as a table, not followed as logic);
- every file docs/architecture.md names exists;
- InfoQ's "Tales of Kafka at Cloudflare" is cited by name, never by a nickname.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("connectors", "readers", "writers", "transforms")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
DISPLAYS = (ast.Dict, ast.List, ast.Tuple, ast.Set, ast.BinOp)


def _modules() -> Iterator[Path]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if not path.name.endswith("_pb2.py") and "__pycache__" not in path.parts:
                yield path


def _is_table(node: ast.AST) -> bool:
    """Data written out: displays whose leaves are constants, names, formatted strings or
    rows built by a constructor from those (a list of alert rules, a mapping of texts)."""
    if isinstance(node, ast.Constant | ast.Name | ast.Attribute | ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp):  # "text " + name, found + [rows]
        return _is_table(node.left) and _is_table(node.right)
    if isinstance(node, ast.Dict):
        return all(
            k is not None and _is_table(k) and _is_table(v)
            for k, v in zip(node.keys, node.values, strict=True)
        )
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        return all(_is_table(element) for element in node.elts)
    if isinstance(node, ast.Call):  # e.g. a row built by a constructor: Row("a", 1)
        return all(_is_table(arg) for arg in node.args) and all(
            _is_table(keyword.value) for keyword in node.keywords
        )
    return False


def _function_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    assert node.end_lineno is not None
    lines = set(range(node.lineno, node.end_lineno + 1))
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        lines -= set(range(body[0].lineno, (body[0].end_lineno or body[0].lineno) + 1))
    for child in ast.walk(node):
        value = getattr(child, "value", None)
        if (
            isinstance(child, ast.Assign | ast.AnnAssign | ast.Return)
            and isinstance(value, DISPLAYS)
            and _is_table(value)
        ):
            lines -= set(range(child.lineno + 1, (child.end_lineno or child.lineno) + 1))
    return len(lines)


def _long_functions(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = _function_lines(node)
            if length > MAX_FUNCTION_LINES:
                where = path.relative_to(ROOT)
                yield f"{where}:{node.lineno} {node.name}() is {length} lines"


def test_no_module_is_over_400_lines() -> None:
    long = [
        f"{path.relative_to(ROOT)} is {count} lines"
        for path in _modules()
        if (count := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert not long, "split these modules by job:\n" + "\n".join(long)


def test_no_function_is_over_60_lines() -> None:
    long = [line for path in _modules() for line in _long_functions(path)]
    assert not long, "split these functions:\n" + "\n".join(long)


def test_a_table_of_data_does_not_count_as_logic() -> None:
    rows = "\n".join(f"        {i!r}: ({i}, 'x')," for i in range(80))
    source = f"def table():\n    '''Doc.'''\n    data = {{\n{rows}\n    }}\n    return data\n"
    function = ast.parse(source).body[0]
    assert isinstance(function, ast.FunctionDef)
    assert _function_lines(function) == 3  # def, `data = {`, return
    logic = "\n".join(f"    x{i} = len(str({i}))" for i in range(80))
    function = ast.parse(f"def logic():\n{logic}\n").body[0]
    assert isinstance(function, ast.FunctionDef)
    assert _function_lines(function) == 81


PATH_IN_DOC = re.compile(
    r"(?<![\w/.])((?:connectors|readers|writers|transforms|templates|harness|bench|scripts|tests"
    r"|alerts|dashboards|deploy|examples|docs)/[\w./-]*[\w/])"
)


def test_every_file_the_architecture_names_exists() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    named = set(PATH_IN_DOC.findall(text))
    assert {"connectors/runtime/runner.py", "connectors/kafka/dead_letters.py"} <= named
    missing = sorted(path for path in named if not (ROOT / path).exists())
    assert not missing, f"docs/architecture.md names files that do not exist: {missing}"


TEXT_SUFFIXES = {".py", ".md", ".toml", ".txt", ".yml", ".yaml", ".json", ".cfg", ".sh", ""}
SKIPPED = {".git", ".venv", "__pycache__", ".mypy_cache", ".ruff_cache", ".local", "build"}
#: The nickname, spelled so that this file does not match itself.
NICKNAME = re.compile(r"\bthe " + "s" + r"eed\b", re.IGNORECASE)


def _text_files() -> Iterator[Path]:
    for path in ROOT.rglob("*"):
        parts = set(path.relative_to(ROOT).parts)
        if parts & SKIPPED or any(part.endswith(".egg-info") for part in parts):
            continue
        if path.is_file() and path.suffix in TEXT_SUFFIXES:
            yield path


def test_the_article_is_cited_by_name() -> None:
    """A random seed is fine; a nickname for the article is not: a reader cannot place it."""
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in _text_files()
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if NICKNAME.search(line)
    ]
    assert not found, 'cite InfoQ\'s "Tales of Kafka at Cloudflare" instead:\n' + "\n".join(found)

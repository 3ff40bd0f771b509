"""A catalog folder: one YAML file per topic, every problem named by file and field.

All files are read and every problem is gathered (not only the first), so a pull request
is fixed in one round, as `resolve()` does for the environment.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from connectors.config.catalog.model import TopicSpec
from connectors.config.schemas import read_regular_file
from connectors.core.errors import ConnectorError, one_line

MAX_FILE_BYTES = 1024 * 1024
SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, slots=True)
class CatalogProblem:
    """One line of `connector topics lint`: `file: field: what is wrong`."""

    file: str
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.field}" if self.field else self.file
        return f"{one_line(where)}: {one_line(self.message)}"


class CatalogError(ConnectorError):
    """The catalog cannot be used as it is; `problems` says why, one line each."""

    def __init__(self, problems: list[CatalogProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


@dataclass(frozen=True)
class Catalog:
    """The topics of a catalog by name, and the file each came from."""

    topics: dict[str, TopicSpec] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)

    def __iter__(self) -> Iterator[TopicSpec]:
        """The topics in name order."""
        return iter(self.topics[name] for name in sorted(self.topics))

    def file_of(self, topic: str) -> str:
        return self.files.get(topic, "?")


def topic_files(root: Path) -> list[Path]:
    """The topic files of a catalog: `root` itself when it is a file, else every YAML file
    under it (sub-folders included, hidden ones skipped), in a stable order."""
    if root.is_file():
        return [root]
    return sorted(
        path
        for path in root.rglob("*")
        if path.suffix in SUFFIXES
        and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
    )


def load_catalog(root: Path) -> Catalog:
    """Every topic file under `root`, validated; CatalogError listing each problem."""
    problems: list[CatalogProblem] = []
    if not root.exists():
        raise CatalogError([CatalogProblem(str(root), "", "no such file or folder")])
    files = topic_files(root)
    if not files:
        raise CatalogError([CatalogProblem(str(root), "", "no topic file (*.yaml, *.yml)")])
    catalog = Catalog()
    for path in files:
        spec = _load_file(path, problems)
        if spec is None:
            continue
        first = catalog.files.get(spec.name)
        if first is not None:
            problems.append(
                CatalogProblem(str(path), "name", f"topic {spec.name!r} is declared in {first} too")
            )
            continue
        catalog.topics[spec.name] = spec
        catalog.files[spec.name] = str(path)
    if problems:
        raise CatalogError(problems)
    return catalog


def _load_file(path: Path, problems: list[CatalogProblem]) -> TopicSpec | None:
    import yaml  # here: only a connector with a topic catalog parses YAML

    name = str(path)
    try:
        document = yaml.safe_load(read_regular_file(path, MAX_FILE_BYTES))
    except (OSError, ValueError) as exc:
        problems.append(CatalogProblem(name, "", f"unreadable: {exc}"))
        return None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        problems.append(CatalogProblem(name, where, f"not YAML: {getattr(exc, 'problem', exc)}"))
        return None
    if not isinstance(document, dict):
        problems.append(CatalogProblem(name, "", "a mapping of topic fields (name, type, ...)"))
        return None
    try:
        return TopicSpec.model_validate(document)
    except ValidationError as exc:
        for error in exc.errors():
            field_name = ".".join(str(part) for part in error["loc"]) or "(file)"
            message = error["msg"].removeprefix("Value error, ")
            problems.append(CatalogProblem(name, field_name, message))
        return None

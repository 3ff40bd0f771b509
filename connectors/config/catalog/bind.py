"""`TOPIC_CATALOG`: the runtime takes each consumed topic's type from the catalog.

`TOPIC_SCHEMAS` becomes optional: a topic of TOPICS the catalog declares is bound to the
catalog's type; an entry of `TOPIC_SCHEMAS` for it must name the same type (anything else
is a configuration error: two sources disagree on what the topic carries).
"""

from __future__ import annotations

from pathlib import Path

from connectors.config.catalog.load import CatalogError, load_catalog
from connectors.core.errors import ConfigError, Problem, quoted


def catalog_types(root: Path) -> dict[str, str]:
    """Each topic of the catalog at `root` and its type; ConfigError naming TOPIC_CATALOG
    when the catalog is not valid."""
    try:
        catalog = load_catalog(root)
    except CatalogError as exc:
        raise ConfigError([invalid(str(root), exc)]) from exc
    return {spec.name: spec.type for spec in catalog}


def invalid(path: str, exc: CatalogError) -> Problem:
    """The catalog's first problem (and how many more) as one TOPIC_CATALOG line."""
    first = exc.problems[0]
    more = f" and {len(exc.problems) - 1} more" if len(exc.problems) > 1 else ""
    return Problem("TOPIC_CATALOG", f"a valid catalog ({first}{more})", path)


def bind_catalog(
    path: str, topics: tuple[str, ...], bindings: dict[str, str], problems: list[Problem]
) -> dict[str, str]:
    """`bindings` (from TOPIC_SCHEMAS) completed with the catalog's types of `topics`."""
    try:
        catalog = load_catalog(Path(path))
    except CatalogError as exc:
        problems.append(invalid(path, exc))
        return bindings
    merged = dict(bindings)
    for topic in topics:
        spec = catalog.topics.get(topic)
        if spec is None:
            continue
        bound = bindings.get(topic)
        if bound is not None and bound != spec.type:
            problems.append(
                Problem(
                    "TOPIC_SCHEMAS",
                    f"the type TOPIC_CATALOG declares for {quoted(topic)} ({spec.type}); "
                    f"{quoted(bound)} contradicts it",
                    f"{topic}={bound}",
                )
            )
        merged[topic] = spec.type
    return merged

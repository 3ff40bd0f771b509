"""`TOPIC_CATALOG`: the runtime takes each consumed topic's type from the catalog.

`TOPIC_SCHEMAS` becomes optional: a topic of TOPICS the catalog declares is bound to the
catalog's type; an entry of `TOPIC_SCHEMAS` for it must name the same type (anything else
is a configuration error: two sources disagree on what the topic carries).
"""

from __future__ import annotations

from pathlib import Path

from connectors.config.catalog.load import CatalogError, load_catalog
from connectors.core.errors import Problem, quoted


def bind_catalog(
    path: str, topics: tuple[str, ...], bindings: dict[str, str], problems: list[Problem]
) -> dict[str, str]:
    """`bindings` (from TOPIC_SCHEMAS) completed with the catalog's types of `topics`."""
    try:
        catalog = load_catalog(Path(path))
    except CatalogError as exc:
        first = exc.problems[0]
        more = f" and {len(exc.problems) - 1} more" if len(exc.problems) > 1 else ""
        problems.append(Problem("TOPIC_CATALOG", f"a valid catalog ({first}{more})", path))
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

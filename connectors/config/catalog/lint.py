"""`connector topics lint`: is the catalog usable, offline.

Beyond what each file's model checks: every type resolves in the descriptor set, the
replication survives a broker's loss (at least 3, unless a test cluster says otherwise),
`min.insync.replicas` leaves room to lose a replica, and each file is named after its
topic, so a reviewer finds a topic's file by its name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from connectors.config.catalog.load import Catalog, CatalogError, CatalogProblem, load_catalog
from connectors.core.records import RAW

MIN_REPLICATION = 3

#: Whether a protobuf full name is defined where types are looked up.
Resolver = Callable[[str], bool]


def lint(root: Path, resolves: Resolver, *, allow_low_replication: bool = False) -> list[str]:
    """Every problem of the catalog at `root`, one line each (empty: the catalog is fine)."""
    try:
        catalog = load_catalog(root)
    except CatalogError as exc:
        return [str(p) for p in exc.problems]
    return [str(p) for p in check(catalog, resolves, allow_low_replication=allow_low_replication)]


def check(
    catalog: Catalog, resolves: Resolver, *, allow_low_replication: bool = False
) -> list[CatalogProblem]:
    """The problems of a loaded catalog that its files' models cannot see alone."""
    problems: list[CatalogProblem] = []
    for spec in catalog:
        file = catalog.file_of(spec.name)
        stem = Path(file).stem
        if stem != spec.name:
            problems.append(
                CatalogProblem(
                    file,
                    "name",
                    f"the file of topic {spec.name!r} is named "
                    f"{spec.name}.yaml, not {Path(file).name}",
                )
            )
        if spec.type != RAW and not resolves(spec.type):
            problems.append(
                CatalogProblem(
                    file,
                    "type",
                    f"{spec.type!r} is not defined in the descriptor "
                    "set (PROTO_DESCRIPTOR_SET or --descriptor-set)",
                )
            )
        if spec.replication < MIN_REPLICATION and not allow_low_replication:
            problems.append(
                CatalogProblem(
                    file,
                    "replication",
                    f"{spec.replication} is below "
                    f"{MIN_REPLICATION}: one broker's loss would lose data or stop "
                    "writes (--allow-low-replication for a test cluster)",
                )
            )
        min_isr = spec.configs.get("min.insync.replicas")
        if min_isr is not None and (not min_isr.isdigit() or int(min_isr) > spec.replication):
            problems.append(
                CatalogProblem(
                    file,
                    "configs.min.insync.replicas",
                    f"an integer at most the replication ({spec.replication}); {min_isr!r} is not",
                )
            )
    return problems

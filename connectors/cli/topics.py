"""`connector topics lint|plan|apply CATALOG`: topics as code.

A catalog is a folder of YAML files, one per topic (`connectors.config.catalog.model`).
`lint` checks it offline (exit 2, one line per problem naming file and field); `plan`
says what `apply` would change, touching nothing (exit 0: nothing pending, 3: changes
pending, 1: a change would be refused); `apply` makes the cluster match (exit 0), or
changes nothing at all and exits 1 when any change is refused (fewer partitions, another
replication, another type, deleting a topic) unless a flag allows it. Connects with the
`KAFKA_*` variables like every other command.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pool

from connectors.cli.against import check_against
from connectors.config.catalog.lint import Resolver, check
from connectors.config.catalog.load import Catalog, CatalogError, load_catalog
from connectors.config.catalog.model import TopicSpec
from connectors.config.catalog.plan import ClusterState, Plan, Recorded, group_prefixes, plan
from connectors.config.schemas import find_message_class, load_descriptor_set
from connectors.config.settings import KafkaSettings, load
from connectors.core.errors import ConfigError, Problem
from connectors.kafka.admin import Admin
from connectors.kafka.catalog_record import DEFAULT_TOPIC, read_records, write_records

EXIT_OK, EXIT_REFUSED, EXIT_LINT, EXIT_PENDING = 0, 1, 2, 3


def resolver(descriptor_set: str | None, modules: str | None) -> Resolver:
    """Whether a type is defined in the descriptor set and/or the modules' default pool."""
    pools: list[descriptor_pool.DescriptorPool] = []
    problems: list[Problem] = []
    if descriptor_set:
        try:
            pools.append(load_descriptor_set(Path(descriptor_set)))
        except (OSError, ValueError, TypeError) as exc:
            problems.append(
                Problem("PROTO_DESCRIPTOR_SET", f"a FileDescriptorSet ({exc})", descriptor_set)
            )
    for module in [m.strip() for m in (modules or "").split(",") if m.strip()]:
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - any import failure is a config problem
            problems.append(Problem("PROTO_MODULES", f"importable modules ({exc})", module))
        pools.append(descriptor_pool.Default())
    if problems:
        raise ConfigError(problems)
    found = tuple(pools)
    return lambda name: find_message_class(name, found) is not None


def linted(args: argparse.Namespace, environ: Mapping[str, str]) -> Catalog | None:
    """The catalog, or None after printing every problem (one line each) to stderr."""
    root = args.catalog or environ.get("TOPIC_CATALOG")
    if not root:
        raise ConfigError([Problem("TOPIC_CATALOG", "a catalog folder (argument or variable)")])
    descriptor_set = args.descriptor_set or environ.get("PROTO_DESCRIPTOR_SET")
    resolves = resolver(descriptor_set, environ.get("PROTO_MODULES"))
    try:
        catalog = load_catalog(Path(root))
        lines = [
            str(p)
            for p in check(catalog, resolves, allow_low_replication=args.allow_low_replication)
        ]
    except CatalogError as exc:
        lines = [str(p) for p in exc.problems]
    against = getattr(args, "against", None)
    if against and not lines:
        lines = check_against(catalog, Path(root), against, descriptor_set, args.against_set)
    for line in lines:
        print(line, file=sys.stderr)
    return None if lines else catalog


def cmd_lint(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    catalog = linted(args, environ)
    if catalog is None:
        return EXIT_LINT
    print(f"{len(catalog.topics)} topics: the catalog is valid", file=sys.stderr)
    return EXIT_OK


async def cluster_plan(
    kafka: KafkaSettings, catalog: Catalog, args: argparse.Namespace
) -> tuple[Plan, ClusterState]:
    record_topic = args.record_topic
    async with Admin(kafka) as admin:
        topics = await admin.topics([*catalog.topics, record_topic])
        record = topics.pop(record_topic, None)
        recorded = await read_records(kafka, record_topic, record.partitions if record else 0)
        topics.update(await admin.topics(sorted(set(recorded) - set(catalog.topics))))
        acls = await admin.acls()
        state = ClusterState(topics, acls or set(), recorded, authorizer=acls is not None)
    made = plan(
        catalog,
        state,
        allow_type_change=getattr(args, "allow_type_change", False),
        allow_delete=getattr(args, "allow_delete", False),
    )
    return made, state


def _kafka(environ: Mapping[str, str]) -> KafkaSettings:
    problems: list[Problem] = []
    kafka = load(KafkaSettings, environ, problems)
    if problems or kafka is None:
        raise ConfigError(problems)
    return kafka


def cmd_plan(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    kafka = _kafka(environ)
    catalog = linted(args, environ)
    if catalog is None:
        return EXIT_LINT
    made, _ = asyncio.run(cluster_plan(kafka, catalog, args))
    print(made.render())
    if made.refused:
        return EXIT_REFUSED
    return EXIT_PENDING if made.changes else EXIT_OK


async def _apply(kafka: KafkaSettings, catalog: Catalog, args: argparse.Namespace) -> int:
    made, _ = await cluster_plan(kafka, catalog, args)
    print(made.render(), flush=True)
    if made.refused:
        print("nothing applied: the cluster is unchanged", file=sys.stderr)
        return EXIT_REFUSED
    records: list[tuple[str, Recorded | None]] = []
    async with Admin(kafka) as admin:
        for change in made.changes:
            if change.kind == "record" and change.spec is not None:
                records.append((change.topic, _recorded(change.spec)))
                continue
            await admin.apply(change)
            if change.kind in ("delete", "unrecord"):
                records.append((change.topic, None))
        if records:
            await admin.ensure_record_topic(args.record_topic)
    if records:
        await write_records(kafka, args.record_topic, records)
    print(f"applied {len(made.changes)} changes", file=sys.stderr)
    return EXIT_OK


def _recorded(spec: TopicSpec) -> Recorded:
    return Recorded(spec.type, group_prefixes(spec))


def cmd_apply(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    kafka = _kafka(environ)
    catalog = linted(args, environ)
    if catalog is None:
        return EXIT_LINT
    return asyncio.run(_apply(kafka, catalog, args))


def add_parser(subparsers: Any) -> None:
    topics = subparsers.add_parser("topics", help="topics as code: lint, plan, apply a catalog")
    sub = topics.add_subparsers(dest="topics_command", required=True)
    for name, handler, text in (
        ("lint", cmd_lint, "check the catalog offline (exit 2 on a problem)"),
        ("plan", cmd_plan, "show what apply would change (exit 0 none, 3 pending, 1 refused)"),
        ("apply", cmd_apply, "make the cluster match the catalog"),
    ):
        command = sub.add_parser(name, help=text)
        command.add_argument("catalog", nargs="?", help="catalog folder (default TOPIC_CATALOG)")
        command.add_argument(
            "--descriptor-set",
            help="FileDescriptorSet resolving the types (default PROTO_DESCRIPTOR_SET)",
        )
        command.add_argument(
            "--allow-low-replication",
            action="store_true",
            help="accept a replication factor below 3 (a test cluster)",
        )
        if name == "lint":
            command.add_argument(
                "--against",
                metavar="REF",
                help="a previous catalog folder or a git revision: flag changes of types that "
                "break the topics' readers",
            )
            command.add_argument(
                "--against-descriptor-set",
                dest="against_set",
                help="the descriptor set of the previous catalog (default: the descriptor "
                "set's file at REF, when REF is a git revision)",
            )
        else:
            command.add_argument(
                "--record-topic",
                default=DEFAULT_TOPIC,
                help="compacted topic recording each topic's type",
            )
        if name == "apply":
            command.add_argument(
                "--allow-type-change",
                action="store_true",
                help="record a topic's new type (its readers must cope)",
            )
            command.add_argument(
                "--allow-delete",
                action="store_true",
                help="delete recorded topics that left the catalog",
            )
        command.set_defaults(handler=handler)

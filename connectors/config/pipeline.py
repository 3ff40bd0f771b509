"""From the environment to a validated, fully resolved pipeline, with nothing connected.

`resolve` gathers every problem it finds (not only the first), so an operator fixes a bad
deployment in one round: settings, plugin names, transform names, protobuf bindings.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from google.protobuf import descriptor_pool
from pydantic_settings import BaseSettings

from connectors.config.catalog.bind import bind_catalog
from connectors.config.observability import HealthSettings, LogSettings, TracingSettings
from connectors.config.output_fields import check_output_fields
from connectors.config.schemas import (
    TopicSchema,
    TopicSchemas,
    find_message_class,
    load_descriptor_set,
)
from connectors.config.settings import (
    DeadLetterSettings,
    KafkaSettings,
    RetrySettings,
    RuntimeSettings,
    ShutdownSettings,
    load,
)
from connectors.config.transforms import TransformSettings
from connectors.core.errors import QUOTED_LIMIT, ConfigError, Problem, quoted
from connectors.core.reader import ReaderPlugin
from connectors.core.records import RAW
from connectors.core.registry import READERS, WRITERS, Registry, UnknownName
from connectors.core.transform import TRANSFORMS, Chain
from connectors.core.transform_kinds import misfit
from connectors.core.writer import WriterPlugin

T = TypeVar("T")

_DEFAULT_TRANSFORM = TransformSettings.model_validate({})


@dataclass(frozen=True)
class Pipeline:
    """Everything `connector run` needs, resolved and validated."""

    runtime: RuntimeSettings
    kafka: KafkaSettings
    reader: ReaderPlugin
    reader_settings: BaseSettings
    writer: WriterPlugin
    writer_settings: BaseSettings
    schemas: TopicSchemas
    chain: Chain
    retry: RetrySettings
    shutdown: ShutdownSettings
    dead_letter: DeadLetterSettings
    logging: LogSettings
    health: HealthSettings
    tracing: TracingSettings
    transform: TransformSettings = field(default_factory=lambda: _DEFAULT_TRANSFORM)

    @property
    def name(self) -> str:
        return self.runtime.connector_name

    @property
    def dlq_topic(self) -> str:
        return self.dead_letter.topic or f"{self.runtime.connector_name}.dlq"

    @property
    def group_id(self) -> str:
        return self.kafka.group_id or self.runtime.connector_name

    def describe(self) -> str:
        """The resolved pipeline as `connector check` prints it: one block per component,
        one `NAME=value` per line, secrets masked (`connectors.config.shown`)."""
        from connectors.config.shown import blocks  # noqa: PLC0415 - it imports Pipeline

        return blocks(self)


def resolve(environ: Mapping[str, str]) -> Pipeline:
    """Validate the environment into a Pipeline; raise ConfigError listing every problem."""
    problems: list[Problem] = []
    runtime = load(RuntimeSettings, environ, problems)
    kafka = load(KafkaSettings, environ, problems)
    retry = load(RetrySettings, environ, problems)
    shutdown = load(ShutdownSettings, environ, problems)
    dead_letter = load(DeadLetterSettings, environ, problems)
    log_settings = load(LogSettings, environ, problems)
    health_settings = load(HealthSettings, environ, problems)
    trace_settings = load(TracingSettings, environ, problems)
    transform_settings = load(TransformSettings, environ, problems)
    topics_known = True
    if runtime is None:
        runtime, topics_known = _partial_runtime(environ, problems)
    _import("TRANSFORM_MODULES", runtime.transform_modules, problems)
    reader = _lookup(READERS, "READER", runtime.reader, problems)
    writer = _lookup(WRITERS, "WRITER", runtime.writer, problems)
    reader_settings: BaseSettings | None = None
    if reader is not None:
        reader_settings = (
            kafka if reader.settings is KafkaSettings else load(reader.settings, environ, problems)
        )
    writer_settings = load(writer.settings, environ, problems) if writer else None
    chain = _chain(runtime, problems)
    schemas = _schemas(runtime, problems) if topics_known else None
    check_output_fields(writer, writer_settings, chain, schemas, problems)

    if (
        problems
        or kafka is None
        or retry is None
        or shutdown is None
        or dead_letter is None
        or log_settings is None
        or health_settings is None
        or trace_settings is None
        or reader is None
        or writer is None
        or reader_settings is None
        or writer_settings is None
        or schemas is None
    ):
        raise ConfigError(problems)
    return Pipeline(
        runtime,
        kafka,
        reader,
        reader_settings,
        writer,
        writer_settings,
        schemas,
        chain,
        retry,
        shutdown,
        dead_letter,
        log_settings,
        health_settings,
        trace_settings,
        transform_settings or _DEFAULT_TRANSFORM,  # None only with problems, raised above
    )


def _partial_runtime(
    environ: Mapping[str, str], problems: list[Problem]
) -> tuple[RuntimeSettings, bool]:
    """Runtime settings without the invalid variables, so the other checks still run and
    every problem is reported in one go; the placeholders are never used to connect."""
    bad = {p.variable for p in problems}
    usable = {k: v for k, v in environ.items() if k.upper() not in bad}
    usable.setdefault("CONNECTOR_NAME", "unnamed")
    topics_known = "TOPICS" not in bad
    usable.setdefault("TOPICS", "-")
    runtime = load(RuntimeSettings, usable, [])
    if runtime is None:  # pragma: no cover - every invalid variable was removed
        raise ConfigError(problems)
    return runtime, topics_known


def _lookup(registry: Registry[T], variable: str, name: str, problems: list[Problem]) -> T | None:
    try:
        return registry.get(name)
    except UnknownName as exc:
        problems.append(Problem(variable, f"one of: {', '.join(exc.available)}", name))
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - a broken plugin is reported, not raised
        problems.append(Problem(variable, f"a loadable plugin ({_failure(exc)})", name))
    return None


def _import(variable: str, modules: tuple[str, ...], problems: list[Problem]) -> bool:
    """Import each module; any failure, even SystemExit from a module's top level (which
    would otherwise end the process with that module's exit code, 0 included), is a
    configuration problem naming `variable`. Only Ctrl-C goes through."""
    ok = True
    for module in modules:
        try:
            importlib.import_module(module)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - any import failure is a config problem
            problems.append(Problem(variable, f"importable modules ({_failure(exc)})", module))
            ok = False
    return ok


def _failure(exc: BaseException) -> str:
    """`Type: message`, the message cut short: it is echoed in a one-line config error."""
    text = str(exc)
    if len(text) > QUOTED_LIMIT:
        text = f"{text[:QUOTED_LIMIT]}... ({len(text)} characters)"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _chain(runtime: RuntimeSettings, problems: list[Problem]) -> Chain:
    steps = []
    for name in runtime.transforms:
        try:
            fn = TRANSFORMS.get(name)
            wrong = misfit(fn)
            if wrong is not None:
                problems.append(Problem("TRANSFORMS", f"transform {name!r}: {wrong}", name))
                continue
            steps.append((name, fn))
        except UnknownName as exc:
            problems.append(
                Problem("TRANSFORMS", f"registered transforms: {', '.join(exc.available)}", name)
            )
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - a broken entry point is a config problem
            problems.append(Problem("TRANSFORMS", f"a loadable transform ({_failure(exc)})", name))
    return Chain(tuple(steps))


def schemas_for(runtime: RuntimeSettings, problems: list[Problem]) -> TopicSchemas | None:
    """The topic contracts alone, for tools that encode or decode without a pipeline."""
    return _schemas(runtime, problems)


def type_pools(
    runtime: RuntimeSettings, problems: list[Problem]
) -> tuple[descriptor_pool.DescriptorPool, ...] | None:
    """Where protobuf types are looked up: the descriptor set, then PROTO_MODULES' types in
    the default pool; None (with the problem added) when one cannot be loaded."""
    pools: list[descriptor_pool.DescriptorPool] = []
    if runtime.proto_descriptor_set:
        try:
            pools.append(load_descriptor_set(Path(runtime.proto_descriptor_set)))
        except (OSError, ValueError, TypeError) as exc:
            problems.append(
                Problem(
                    "PROTO_DESCRIPTOR_SET",
                    f"a readable FileDescriptorSet ({exc})",
                    runtime.proto_descriptor_set,
                )
            )
            return None
    if runtime.proto_modules:
        if not _import("PROTO_MODULES", runtime.proto_modules, problems):
            return None
        pools.append(descriptor_pool.Default())
    return tuple(pools)


def _schemas(runtime: RuntimeSettings, problems: list[Problem]) -> TopicSchemas | None:
    pools = type_pools(runtime, problems)
    if pools is None:
        return None
    bindings = _bindings(runtime.topic_schemas, problems)
    if runtime.topic_catalog:
        bindings = bind_catalog(runtime.topic_catalog, runtime.topics, bindings, problems)
    schemas: dict[str, TopicSchema] = {}
    for topic in runtime.topics:
        bound = bindings.get(topic)
        if bound is None:
            problems.append(
                Problem(
                    "TOPIC_SCHEMAS",
                    f"a type for every topic in TOPICS; {quoted(topic)} has none "
                    f"(use {quoted(topic + '=bytes')} to read raw bytes)",
                    ",".join(runtime.topic_schemas),
                )
            )
            continue
        schema = _schema(topic, bound, pools, problems)
        if schema is not None:
            schemas[topic] = schema
    for topic in bindings:
        if topic not in runtime.topics:
            problems.append(
                Problem(
                    "TOPIC_SCHEMAS",
                    f"bindings for topics in TOPICS only; {quoted(topic)} is not",
                    f"{topic}={bindings[topic]}",
                )
            )
    return TopicSchemas(schemas) if not problems else None


def _bindings(items: tuple[str, ...], problems: list[Problem]) -> dict[str, str]:
    """TOPIC_SCHEMAS' `topic=type` pairs as a mapping; malformed or repeated ones are
    problems."""
    bindings: dict[str, str] = {}
    for item in items:
        topic, sep, type_name = item.partition("=")
        topic, type_name = topic.strip(), type_name.strip()
        if not sep or not topic or not type_name:
            problems.append(
                Problem("TOPIC_SCHEMAS", "topic=package.Message pairs (or topic=bytes)", item)
            )
        elif topic in bindings:
            problems.append(
                Problem(
                    "TOPIC_SCHEMAS", f"one type per topic; {quoted(topic)} is bound twice", item
                )
            )
        else:
            bindings[topic] = type_name
    return bindings


def _schema(
    topic: str,
    type_name: str,
    pools: tuple[descriptor_pool.DescriptorPool, ...],
    problems: list[Problem],
) -> TopicSchema | None:
    """The schema `topic` is bound to, or None with the problem added."""
    if type_name == RAW:
        return TopicSchema(topic, RAW, None)
    if not pools:
        problems.append(
            Problem(
                "PROTO_DESCRIPTOR_SET",
                f"a descriptor set or PROTO_MODULES defining {quoted(type_name)}",
                None,
            )
        )
        return None
    cls = find_message_class(type_name, pools)
    if cls is None:
        problems.append(
            Problem(
                "TOPIC_SCHEMAS",
                f"a message type defined in PROTO_DESCRIPTOR_SET/PROTO_MODULES; "
                f"{quoted(type_name)} is not",
                f"{topic}={type_name}",
            )
        )
        return None
    return TopicSchema(topic, type_name, cls)

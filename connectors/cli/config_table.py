"""`connector config`: every variable of the runtime, from the settings models themselves.

The README's configuration table is this module's output (`connector config --markdown`),
and a unit test compares the two, so the documentation cannot drift from what validation
accepts. The models give the variable name, the default and what a value must look like
(their field descriptions are also what a config error says was expected); `MEANINGS` adds
what the variable does, where that takes more than the short text an error line can carry.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from connectors.config.observability import HealthSettings, LogSettings, TracingSettings
from connectors.config.settings import (
    DeadLetterSettings,
    KafkaSettings,
    RetrySettings,
    RuntimeSettings,
    ShutdownSettings,
    env_name,
)
from connectors.config.transforms import TransformSettings
from connectors.core.registry import WRITERS

# The writer whose variables the README lists with the runtime's: the default one. The other
# writers' variables (S3_, HTTP_, KAFKA_OUTPUT_) are documented in docs/writers.md.
DEFAULT_WRITER = "kv"

CORE_MODELS: tuple[type[BaseSettings], ...] = (
    RuntimeSettings,
    KafkaSettings,
    RetrySettings,
    TransformSettings,
    ShutdownSettings,
    DeadLetterSettings,
    LogSettings,
    HealthSettings,
    TracingSettings,
)

# Defaults computed from other variables at start-up, where the model's own is None or empty.
DERIVED_DEFAULTS: Mapping[str, str] = {
    "TOPIC_SCHEMAS": "required per topic not in `TOPIC_CATALOG`",
    "KAFKA_GROUP_ID": "`CONNECTOR_NAME`",
    "KAFKA_CLIENT_ID": "`CONNECTOR_NAME`",
    "DLQ_TOPIC": "`<CONNECTOR_NAME>.dlq`",
    "OTEL_SERVICE_NAME": "`CONNECTOR_NAME`",
    "OTEL_TRACES_EXPORTER": "empty: tracing off, at no cost",
}

# What each variable does. Keyed by variable, not kept in the models: a field's description
# is also the "expected ..." part of a one-line config error, which must stay short.
MEANINGS: Mapping[str, str] = {
    "CONNECTOR_NAME": "name of the connector: default consumer group id, metrics label",
    "READER": "reader plugin",
    "WRITER": "writer plugin: `kv` (alias `quicksilver`), `s3` (alias `r2`), `http`, `kafka`",
    "TOPICS": "topics to consume",
    "TRANSFORMS": "transforms applied in order; empty: key and value reach the writer unchanged",
    "TRANSFORM_MODULES": "modules to import so that their `@transform`s register",
    "TOPIC_SCHEMAS": "the one protobuf type of each topic; `topic=bytes` reads raw bytes",
    "TOPIC_CATALOG": "a topic catalog folder (`connector topics`, see docs/topics.md): each "
    "topic's type is taken from it, so `TOPIC_SCHEMAS` is optional; an entry of `TOPIC_SCHEMAS` "
    "that names another type is a configuration error. `connector produce`, `dlq replay` and "
    "the producer library (`connectors.Producer`) enforce it too",
    "PROTO_DESCRIPTOR_SET": "the protobuf types, as written by "
    "`protoc --include_imports --descriptor_set_out=FILE`",
    "PROTO_MODULES": "modules whose import defines protobuf types (generated `_pb2` modules)",
    "BATCH_MAX_MESSAGES": "most records per batch (one write, one commit); a poll takes what has "
    "arrived, and a connector that is behind keeps fetching until the batch is full (or "
    "`BATCH_MAX_WAIT_MS` passed), so a backlog is written in full batches",
    "BATCH_MAX_WAIT_MS": "longest wait for a batch to fill; a connector that is caught up "
    "writes what arrived within it",
    "METRICS_PORT": "HTTP port serving `/metrics` and the health probes; `0` turns it off",
    "METRICS_HOST": "where `/metrics` and the probes listen; the default, every interface, "
    "lets Kubernetes probes and Prometheus reach the pod's IP",
    "ON_ERROR": "poison records (undecodable, wrong type, a transform that raises, a writer's "
    "permanent rejection): `dlq` sends them to the dead-letter topic and goes on; `fail` stops",
    "LOG_LEVEL": "least severe level logged",
    "WORKERS": "members of the consumer group this process starts, each a full pipeline in a "
    "process of its own on its share of the partitions, behind one metrics and health port; "
    "a worker that dies stops the others (exit 1); `auto`: one per CPU the container may use "
    "(affinity and cgroup quota); with static membership each gets "
    "`KAFKA_GROUP_INSTANCE_ID-<n>`",
    "KAFKA_BOOTSTRAP_SERVERS": "brokers to connect to",
    "KAFKA_GROUP_ID": "consumer group",
    "KAFKA_GROUP_INSTANCE_ID": "static membership: a member id unique in the group and kept "
    "across restarts (a StatefulSet's pod name); a restart within the session timeout then "
    "causes no rebalance, but a member that leaves for good holds its partitions until its "
    "session times out",
    "KAFKA_AUTO_OFFSET_RESET": "where a new group starts",
    "KAFKA_CLIENT_ID": "client id seen by the broker",
    "KAFKA_SESSION_TIMEOUT_MS": "group session timeout",
    "KAFKA_MAX_POLL_INTERVAL_MS": "longest time between polls before the group evicts us",
    "KAFKA_FETCH_MAX_BYTES": "most bytes per fetch request (never more than "
    "`KAFKA_FETCH_BUDGET_BYTES`)",
    "KAFKA_MAX_PARTITION_FETCH_BYTES": "most bytes per partition per fetch: the share of "
    "`KAFKA_FETCH_BUDGET_BYTES` each assigned partition gets is capped at this",
    "KAFKA_FETCH_BUDGET_BYTES": "fetched bytes the reader may hold at once, all partitions "
    "together: each assigned partition fetches this divided by the number assigned (at least "
    "32 KiB, at most `KAFKA_MAX_PARTITION_FETCH_BYTES`), so memory stays bounded with 1 or "
    "100 partitions (beyond budget / 32 KiB partitions, 32 KiB each)",
    "KAFKA_FETCH_MIN_BYTES": "bytes the broker gathers before it answers a fetch (at most "
    "`KAFKA_FETCH_MAX_WAIT_MS` later): above 1, a connector that keeps up writes fewer, "
    "larger batches, for less CPU and more latency (docs/patterns.md has the figures)",
    "KAFKA_FETCH_MAX_WAIT_MS": "longest the broker holds a fetch to gather `KAFKA_FETCH_MIN_BYTES`",
    "KAFKA_ISOLATION_LEVEL": "which records of transactional producers are read",
    "KAFKA_SECURITY_PROTOCOL": "protocol of every Kafka client of the connector (reader, "
    "dead letters, health checks)",
    "KAFKA_SSL_CAFILE": "CA bundle the broker's certificate is verified with",
    "KAFKA_SSL_CERTFILE": "client certificate (with `KAFKA_SSL_KEYFILE`)",
    "KAFKA_SSL_KEYFILE": "key of the client certificate",
    "KAFKA_SSL_KEY_PASSWORD": "password of the client key",
    "KAFKA_SSL_CHECK_HOSTNAME": "verify the broker's name against its certificate",
    "KAFKA_SASL_MECHANISM": "SASL mechanism",
    "KAFKA_SASL_USERNAME": "SASL user (required with `SASL_*` protocols)",
    "KAFKA_SASL_PASSWORD": "SASL password (required with `SASL_*` protocols)",
    "RETRY_INITIAL_MS": "first backoff after a retriable failure (writer or broker down)",
    "RETRY_MAX_MS": "backoff cap; each wait is uniform in [0, cap] (full jitter)",
    "RETRY_MAX_ATTEMPTS": "give up (exit 1, nothing committed) after this many; `0` retries "
    "until SIGTERM",
    "TRANSFORM_CONCURRENCY": "async transform calls (and async batch calls) in flight at "
    "once per batch; outputs stay in record order per partition",
    "TRANSFORM_HTTP_TIMEOUT_S": "connect, read, write and pool timeout of `ctx.http`, the "
    "client transforms share; a timeout is retried like a 5xx",
    "TRANSFORM_HTTP_VERIFY_TLS": "verify the certificates of the servers `ctx.http` calls",
    "TRANSFORM_HTTP_CA_FILE": "CA bundle `ctx.http` verifies servers with (default: the system's)",
    "TRANSFORM_CACHE_TTL_S": "how long a value loaded through `ctx.cache.get` is kept",
    "TRANSFORM_CACHE_MAX_ENTRIES": "most values `ctx.cache` holds (the least recently used "
    "go first)",
    "SHUTDOWN_GRACE_S": "time the batch in flight gets to finish after SIGTERM",
    "DLQ_TOPIC": "the dead-letter topic",
    "DLQ_MAX_RATIO": "stop (exit 1) instead of dead-lettering when more than this share of "
    "recent records is poison",
    "DLQ_WINDOW": "how many recent records the ratio counts",
    "DLQ_CREATE": "create `DLQ_TOPIC` at start when it is missing (with `ON_ERROR=dlq`)",
    "DLQ_PARTITIONS": "partitions of a dead-letter topic created by `DLQ_CREATE`",
    "DLQ_REPLICATION_FACTOR": "replicas of a dead-letter topic created by `DLQ_CREATE`",
    "LOG_FORMAT": "`json` (one object per line with connector, topic, partition, trace ids) "
    "or `text`",
    "LOG_PROGRESS_INTERVAL_S": "seconds between progress lines (records, rate, lag)",
    "HEALTH_STUCK_AFTER_S": "a partition behind whose committed offset has not moved for this "
    "long is `stuck` (`blocked` while a call waits to be retried)",
    "HEALTH_SAMPLE_INTERVAL_S": "how often committed and end offsets are sampled for "
    "`/healthz` and the lag gauges",
    "HEALTH_TIMEOUT_S": "per broker call made by the health checks",
    "HEALTH_WEDGED_AFTER_S": "a stage (decode, transform, write, ...) running this long "
    "without waiting to retry anything is wedged and fails `/livez`; a stage waiting on a "
    "dependency is `blocked` instead and never fails it",
    "OTEL_SDK_DISABLED": "`true` turns tracing off whatever else is set",
    "OTEL_TRACES_EXPORTER": "where spans go; tracing is on when this or an endpoint is set "
    "(see [docs/observability.md](docs/observability.md); the SDK reads its other `OTEL_*` "
    "variables itself)",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "OTLP collector; `/v1/traces` is appended",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "OTLP traces endpoint; wins over "
    "`OTEL_EXPORTER_OTLP_ENDPOINT`",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "OTLP protocol",
    "OTEL_SERVICE_NAME": "`service.name` of the spans",
    "OTEL_TRACES_SAMPLER": "sampler for traces the connector starts; sample at the producers "
    "(`parentbased_traceidratio`) rather than turning tracing off",
    "OTEL_TRACES_SAMPLER_ARG": "ratio of the `traceidratio` samplers",
    "KV_URL": "the store: embedded LMDB, or Redis; a password in it is masked in output",
    "KV_MAP_SIZE_MB": "LMDB map size: the store's maximum size",
    "KV_SYNC": "LMDB fsync on every batch. `false` is faster, but a power loss (not a process "
    "crash) can lose the last writes whose offsets were already committed: only for stores "
    "you can rebuild from the topic",
    "KV_KEY_PREFIX": "for several connectors sharing a store",
    "KV_REPLAY_GUARD_KEYS": "LMDB keeps one position per partition; for the Kafka keys of "
    "records it did not write (dead-lettered or dropped) it also remembers the newest offset "
    "written since, up to this many keys, so that `connector dlq replay` never overwrites "
    "newer data; a replayed key beyond the cap is judged by its partition's position alone",
}

SECRET_NOTE = "(secret: never printed)"  # noqa: S105 - a phrase, not a password


@dataclass(frozen=True)
class Row:
    """One variable: its name, its default as shown, what a value must be, what it does."""

    variable: str
    default: str
    accepts: str
    meaning: str


def models() -> tuple[type[BaseSettings], ...]:
    """The runtime's models, then the default writer's (found like any plugin)."""
    return (*CORE_MODELS, WRITERS.get(DEFAULT_WRITER).settings)


def rows() -> Iterator[Row]:
    for model in models():
        for field, info in model.model_fields.items():
            variable = env_name(model, field)
            meaning = MEANINGS.get(variable, "")
            if _is_secret(info):
                meaning = f"{meaning} {SECRET_NOTE}".strip()
            yield Row(
                variable,
                DERIVED_DEFAULTS.get(variable) or _shown_default(info),
                info.description or "",
                meaning,
            )


def _is_secret(info: FieldInfo) -> bool:
    return "SecretStr" in str(info.annotation) or info.annotation is SecretStr


def _shown_default(info: FieldInfo) -> str:
    default = info.default
    if default is PydanticUndefined:
        return "required"
    if default is None:
        return "none"
    if default in ((), ""):
        return "empty"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, float) and default.is_integer():
        return f"`{int(default)}`"
    if isinstance(default, tuple):
        return f"`{','.join(str(item) for item in default)}`"
    return f"`{default}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _plain(text: str) -> str:
    """A model's description as Markdown text: `<NAME>` must not read as an HTML tag."""
    return text.replace("<", "&lt;")


def markdown() -> str:
    """The README's configuration table, one row per variable, in the models' order."""
    lines = ["| variable | default | accepts | meaning |", "|---|---|---|---|"]
    for row in rows():
        cells = (f"`{row.variable}`", row.default, _plain(row.accepts), row.meaning)
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def text() -> str:
    """Tab-separated variable, default, accepted values and meaning, for scripts."""
    return "".join(
        "\t".join((row.variable, row.default.strip("`"), row.accepts, row.meaning)) + "\n"
        for row in rows()
    )


# The generated block of a Markdown file: what lies between these two comments is replaced.
BLOCK = re.compile(r"(<!-- config-table:start[^\n]*-->\n)(.*?)(<!-- config-table:end -->)", re.S)


def table_in(document: str) -> str | None:
    """The table between the markers of `document`, or None without exactly one block."""
    found = BLOCK.findall(document)
    return str(found[0][1]) if len(found) == 1 else None


def with_table(document: str) -> str:
    """`document` with its generated block replaced by the current table."""
    if table_in(document) is None:
        raise ValueError("no single config-table:start/end block")
    table = markdown()
    return BLOCK.sub(lambda found: found.group(1) + table + found.group(3), document)


def cmd_config(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    if args.readme is not None:
        path = Path(args.readme)
        try:
            path.write_text(with_table(path.read_text()))
        except (OSError, ValueError) as exc:
            print(f"error: {path}: {exc}", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(markdown() if args.markdown else text())
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config = sub.add_parser(
        "config", help="list every variable with its default, accepted values and meaning"
    )
    config.add_argument(
        "--markdown", action="store_true", help="as the README's configuration table"
    )
    config.add_argument(
        "--readme",
        metavar="FILE",
        help="rewrite the Markdown table between FILE's config-table markers in place",
    )
    config.set_defaults(handler=cmd_config)

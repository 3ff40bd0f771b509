"""The environment, validated once at start-up into frozen settings models.

Each component owns one model with its own prefix (`KAFKA_`, `KV_`, ...); the runtime's own
variables have none. Nothing below reads `os.environ`: models are built here from the
mapping given to `load` and passed down.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from connectors.config import names
from connectors.config.cpus import Workers
from connectors.core.errors import Problem, quoted

Names = Annotated[tuple[str, ...], NoDecode]
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def split_names(value: Any) -> Any:
    """Comma-separated text → tuple of non-empty, stripped names."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class Settings(BaseSettings):
    """Settings built only from the mapping `load` passes in, never from the process itself,
    so that validation is the same in tests, in `connector check` and at start-up."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)

    def describe(self) -> str:
        """`VARIABLE=value`, one per line, for `connector check` (`connectors.config.shown`):
        secrets `set`/`unset`, URL passwords masked, defaults marked. A plugin's model
        shows derived values by overriding `shown_values` (or all of this)."""
        from connectors.config.shown import setting_lines  # noqa: PLC0415 - it imports us

        return "\n".join(setting_lines(self))

    def shown_values(self) -> dict[str, str]:
        """Per variable, the text `connector check` shows instead of the value (derived
        values, masked parts); none by default."""
        return {}


class RuntimeSettings(Settings):
    """The pipeline itself: what to read, how to decode, what to apply, where to write."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False)

    connector_name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$",
        description="a name of letters, digits, '.', '_' or '-'",
    )
    reader: str = Field("kafka", description="a reader name")
    writer: str = Field("kv", description="a writer name")
    topics: Names = Field(description="comma-separated Kafka topic names")
    transforms: Names = Field((), description="comma-separated transform names")
    transform_modules: Names = Field((), description="comma-separated importable modules")
    topic_schemas: Names = Field(
        (), description="comma-separated topic=package.Message pairs (or topic=bytes)"
    )
    topic_catalog: str | None = Field(
        None, description="path of a topic catalog folder (connector topics): types by topic"
    )
    proto_descriptor_set: str | None = Field(
        None, description="path of a FileDescriptorSet (protoc --descriptor_set_out)"
    )
    proto_modules: Names = Field((), description="comma-separated modules defining protobufs")
    batch_max_messages: int = Field(40_000, ge=1, le=1_000_000, description="an integer 1-1000000")
    batch_max_wait_ms: int = Field(500, ge=0, le=600_000, description="milliseconds 0-600000")
    metrics_port: int = Field(9464, ge=0, le=65535, description="a TCP port 0-65535 (0: off)")
    metrics_host: str = Field(
        "0.0.0.0",  # noqa: S104 - Kubernetes probes and Prometheus reach the pod's IP
        min_length=1,
        description="an IP address or host name to bind the metrics and health server to",
    )
    on_error: Literal["dlq", "fail"] = Field(
        "dlq", description="dlq (poison goes to the dead-letter topic) or fail (stop)"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="DEBUG, INFO, WARNING or ERROR"
    )
    workers: Workers = Field(
        1, ge=1, le=64, description="a number of processes 1-64, or auto (one per CPU it may use)"
    )

    @field_validator(
        "topics",
        "transforms",
        "transform_modules",
        "topic_schemas",
        "proto_modules",
        mode="before",
    )
    @classmethod
    def _split(cls, value: Any) -> Any:
        return split_names(value)

    @field_validator("transform_modules", "proto_modules")
    @classmethod
    def _module_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Only dotted module names: nothing from the environment is run as a path or code."""
        for name in value:
            if not _MODULE.fullmatch(name):
                raise ValueError(f"dotted Python module names; {quoted(name)} is not one")
        return value

    @field_validator("topics")
    @classmethod
    def _some_topics(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one topic")
        for name in value:
            names.topic_name(name)
        return value

    @field_validator("metrics_host")
    @classmethod
    def _host(cls, value: str) -> str:
        return names.host(value)

    @field_validator("writer", "reader", "on_error", mode="before")
    @classmethod
    def _normalise_name(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


def readable_file(value: str | None) -> str | None:
    """A settings validator for paths the process must read (CA bundles, keys)."""
    if value is not None and not os.access(value, os.R_OK):
        raise ValueError(f"a readable file; {value} is not")
    return value


class KafkaSettings(Settings):
    """The Kafka client: shared by the reader, the dead-letter producer and health checks."""

    model_config = SettingsConfigDict(
        env_prefix="KAFKA_", frozen=True, extra="ignore", case_sensitive=False
    )

    bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        pattern=r"^[^,\s]+:\d+(,[^,\s]+:\d+)*$",
        description="comma-separated host:port pairs (ports 1-65535)",
    )
    group_id: str | None = Field(None, description="a consumer group id")
    group_instance_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9._-]{1,249}$",
        description="a static member id, unique in the group and kept across restarts "
        "(e.g. a StatefulSet pod name)",
    )
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        "earliest", description="earliest or latest"
    )
    client_id: str | None = Field(None, description="a client id")
    session_timeout_ms: int = Field(45_000, ge=1000, description="milliseconds >= 1000")
    max_poll_interval_ms: int = Field(300_000, ge=1000, description="milliseconds >= 1000")
    fetch_max_bytes: int = Field(52_428_800, ge=1024, description="bytes >= 1024")
    max_partition_fetch_bytes: int = Field(4_194_304, ge=1024, description="bytes >= 1024")
    fetch_budget_bytes: int = Field(
        2_097_152, ge=65_536, le=1_073_741_824, description="bytes 65536-1073741824"
    )
    fetch_min_bytes: int = Field(1, ge=1, le=52_428_800, description="bytes 1-52428800")
    fetch_max_wait_ms: int = Field(500, ge=0, le=30_000, description="milliseconds 0-30000")
    isolation_level: Literal["read_committed", "read_uncommitted"] = Field(
        "read_committed",
        description="read_committed (records of aborted transactions are never read) or "
        "read_uncommitted",
    )

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
    )
    ssl_cafile: str | None = Field(None, description="path of a PEM CA bundle")
    ssl_certfile: str | None = Field(None, description="path of a PEM client certificate")
    ssl_keyfile: str | None = Field(None, description="path of the client certificate's key")
    ssl_key_password: SecretStr | None = Field(None, description="the key's password")
    ssl_check_hostname: bool = Field(True, description="true or false")
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
    )
    sasl_username: str | None = Field(None, description="a SASL user name")
    sasl_password: SecretStr | None = Field(None, description="the SASL password")

    @field_validator("auto_offset_reset", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("security_protocol", "sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    _readable = field_validator("ssl_cafile", "ssl_certfile", "ssl_keyfile")(readable_file)
    _ports = field_validator("bootstrap_servers")(names.host_ports)

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL_") and not (
            self.sasl_username and self.sasl_password
        ):
            raise ValueError(
                "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD are required with "
                f"KAFKA_SECURITY_PROTOCOL={self.security_protocol}"
            )
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            raise ValueError("KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together")
        return self


S = TypeVar("S", bound=BaseSettings)


def mask_url(text: str) -> str:
    """`text` with the password of a URL in it replaced, for logs and messages.

    The password is read as a person wrote it, not as `urlsplit` parses it: everything
    from the first ':' after '://' to the LAST '@'. A parser ends the host part at the
    first '/', '?' or '#', so a password holding one of them (`redis://:pa/ss@host`) would
    be shown whole; no reading of the text can put the password outside that span, so
    when an '@' belongs to a path or a query instead, more is hidden, never less. Nothing
    is parsed, so an invalid URL (the very case of a configuration error) is masked too.
    """
    scheme, sep, rest = text.partition("://")
    userinfo, at, host = rest.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    if not (sep and at and colon):
        return text  # no password: no '@', or a user name alone
    return f"{scheme}://{user}:*****@{host}"


def encoding_hint(url: str) -> str:
    """For a URL a parser found without a host or with a bad port: how to write it when
    the cause is a password holding '/', '?' or '#' (where a parser ends the host part);
    empty when it is not."""
    userinfo = url.partition("://")[2].rpartition("@")[0]
    if ":" in userinfo and any(c in userinfo for c in "/?#"):
        return " (percent-encode '/', '?' and '#' in the password: %2F, %3F, %23)"
    return ""


def env_name(model: type[BaseSettings], field: str) -> str:
    prefix = str(model.model_config.get("env_prefix", ""))
    return f"{prefix}{field}".upper()


def is_secret(model: type[BaseSettings], field: str) -> bool:
    info = model.model_fields.get(field)
    return info is not None and "Secret" in str(info.annotation)


def load(model: type[S], environ: Mapping[str, str], problems: list[Problem]) -> S | None:
    """Build `model` from `environ`, adding one Problem per invalid field instead of raising."""
    try:
        fields: dict[str, Any] = _fields_from(model, environ)
        return model(**fields)
    except ValidationError as exc:
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else _field_named_in(model, error["msg"])
            info = model.model_fields.get(field)
            variable = env_name(model, field)
            raw = _raw_value(model, field, environ)
            value = None if is_secret(model, field) or raw is None else mask_url(raw)
            hint = info.description if info is not None and info.description else ""
            reason = "required" if error["type"] == "missing" else error["msg"]
            reason = reason.removeprefix("Value error, ")
            expected = f"{reason}; expected {hint}" if hint else reason
            problems.append(Problem(variable, expected, value))
        return None


def _field_named_in(model: type[BaseSettings], message: str) -> str:
    """The first of `model`'s variables a model-level error message names."""
    for field in model.model_fields:
        if env_name(model, field) in message:
            return field
    return ""


def _raw_value(model: type[BaseSettings], field: str, environ: Mapping[str, str]) -> str | None:
    wanted = env_name(model, field)
    for key, value in environ.items():
        if key.upper() == wanted:
            return value
    return None


def _fields_from(model: type[BaseSettings], environ: Mapping[str, str]) -> dict[str, str]:
    """The model's variables picked from `environ`, so the process environment is not read."""
    fields: dict[str, str] = {}
    for field in model.model_fields:
        raw = _raw_value(model, field, environ)
        if raw is not None:
            fields[field] = raw
    return fields


class RetrySettings(Settings):
    """Capped exponential backoff with full jitter for retriable write and commit failures."""

    model_config = SettingsConfigDict(
        env_prefix="RETRY_", frozen=True, extra="ignore", case_sensitive=False
    )

    initial_ms: int = Field(200, ge=1, le=600_000, description="milliseconds 1-600000")
    max_ms: int = Field(30_000, ge=1, le=3_600_000, description="milliseconds 1-3600000")
    max_attempts: int = Field(
        0, ge=0, description="an integer >= 0 (0: retry until it succeeds or SIGTERM)"
    )

    @model_validator(mode="after")
    def _ordered(self) -> RetrySettings:
        if self.initial_ms > self.max_ms:
            raise ValueError(
                f"RETRY_INITIAL_MS at most RETRY_MAX_MS ({self.initial_ms} > {self.max_ms})"
            )
        return self

    def delay_s(self, attempt: int, draw: float) -> float:
        """Delay before retry `attempt` (1-based); `draw` is uniform in [0, 1)."""
        cap = min(self.max_ms, self.initial_ms * 2 ** min(attempt - 1, 30))
        return float(cap * draw / 1000.0)


class ShutdownSettings(Settings):
    model_config = SettingsConfigDict(
        env_prefix="SHUTDOWN_", frozen=True, extra="ignore", case_sensitive=False
    )

    grace_s: float = Field(
        30.0, ge=0, le=3600, description="seconds 0-3600 to finish the batch in flight"
    )


class DeadLetterSettings(Settings):
    """Where poison records go, and when too much poison means stop instead."""

    model_config = SettingsConfigDict(
        env_prefix="DLQ_", frozen=True, extra="ignore", case_sensitive=False
    )

    topic: str | None = Field(None, description="a Kafka topic name (default <CONNECTOR_NAME>.dlq)")
    max_ratio: float = Field(
        0.25, gt=0, le=1, description="a fraction in (0, 1]: poison share that trips the breaker"
    )
    window: int = Field(
        1000, ge=10, le=1_000_000, description="an integer 10-1000000: recent records counted"
    )
    create: bool = Field(
        False,
        description="true or false: create the dead-letter topic at start when it is missing",
    )
    partitions: int = Field(
        1, ge=1, le=10_000, description="an integer 1-10000: partitions of a created DLQ_TOPIC"
    )
    replication_factor: int = Field(
        -1,
        ge=-1,
        le=32,
        description="an integer 1-32, or -1 for the broker's default: replicas of a created "
        "DLQ_TOPIC",
    )

    @field_validator("topic")
    @classmethod
    def _topic_name(cls, value: str | None) -> str | None:
        return None if value is None else names.topic_name(value)

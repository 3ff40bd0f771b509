"""One topic file: what a pull request declares about a topic.

::

    name: orders.created              # the Kafka topic
    owner: team-orders                # who reviews changes to it
    type: shop.v1.OrderCreated        # its one protobuf type (full name), or `bytes`
    partitions: 12
    replication: 3
    retention: {ms: 604800000, bytes: -1}
    cleanup_policy: delete            # delete or compact
    configs: {min.insync.replicas: "2"}
    acls:
      produce: [User:orders-svc]
      consume:
        - {principal: User:billing, group_prefix: billing-}

Fields are checked by pydantic; a file with an unknown field is refused (a typo must not
pass silently as "not declared").
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from connectors.config.names import topic_name

#: Topic configs the model owns: set through their own fields, not through `configs`.
OWNED_CONFIGS = {
    "retention.ms": "retention.ms",
    "retention.bytes": "retention.bytes",
    "cleanup.policy": "cleanup_policy",
}
_PRINCIPAL = re.compile(r"^[A-Za-z]+:[^\s,;]+$")
_TYPE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_CONFIG_KEY = re.compile(r"^[a-z][a-z0-9]*(\.[a-z0-9]+)*$")


def principal(value: str) -> str:
    """`Type:name`, as Kafka's ACLs name principals (`User:alice`)."""
    if not _PRINCIPAL.fullmatch(value):
        raise ValueError(f"a principal such as User:alice; {value!r} is not one")
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Retention(Strict):
    """How long and how much a partition keeps; -1 is "no limit", as in Kafka."""

    ms: int | None = Field(None, ge=-1)
    bytes: int | None = Field(None, ge=-1)


class ConsumeAcl(Strict):
    """A principal allowed to read the topic, in consumer groups named with a prefix."""

    principal: str
    group_prefix: str = Field(min_length=1, max_length=249)

    @field_validator("principal")
    @classmethod
    def _principal(cls, value: str) -> str:
        return principal(value)


class Acls(Strict):
    produce: tuple[str, ...] = ()
    consume: tuple[ConsumeAcl, ...] = ()

    @field_validator("produce")
    @classmethod
    def _principals(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            principal(item)
        return value


class TopicSpec(Strict):
    """One topic as declared; `configs` renders every topic config the catalog sets."""

    name: str
    owner: str = Field(min_length=1)
    type: str
    partitions: int = Field(ge=1, le=100_000)
    replication: int = Field(ge=1, le=32767)
    retention: Retention = Retention(ms=None, bytes=None)
    cleanup_policy: Literal["delete", "compact", "compact,delete"] = "delete"
    configs: dict[str, str] = {}
    acls: Acls = Acls()

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return topic_name(value)

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        if value != "bytes" and not _TYPE.fullmatch(value):
            raise ValueError(f"a protobuf full name such as pkg.v1.Message; {value!r} is not one")
        return value

    @field_validator("configs", mode="before")
    @classmethod
    def _texts(cls, value: object) -> object:
        """YAML gives numbers and booleans; Kafka's configs are text."""
        if isinstance(value, dict):
            return {k: _text(v) for k, v in value.items()}
        return value

    @field_validator("configs")
    @classmethod
    def _keys(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if key in OWNED_CONFIGS:
                raise ValueError(f"{key} is set by its own field ({OWNED_CONFIGS[key]})")
            if not _CONFIG_KEY.fullmatch(key):
                raise ValueError(f"topic config names such as min.insync.replicas; {key!r} is not")
        return value

    def topic_configs(self) -> dict[str, str]:
        """Every topic config the catalog sets for this topic, as Kafka names them."""
        configs = {"cleanup.policy": self.cleanup_policy, **self.configs}
        if self.retention.ms is not None:
            configs["retention.ms"] = str(self.retention.ms)
        if self.retention.bytes is not None:
            configs["retention.bytes"] = str(self.retention.bytes)
        return dict(sorted(configs.items()))


def _text(value: object) -> object:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value

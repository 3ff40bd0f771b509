"""The admin side of `connector topics`: read what a catalog manages, then change it.

aiokafka has the requests (Metadata, CreateTopics, CreatePartitions, DescribeConfigs,
AlterConfigs, Describe/Create/DeleteAcls) but no admin methods for ACLs; every request
here goes through one `AIOKafkaClient`, connected like every other client
(`client_options`: same TLS, same SASL), with the broker's answer codes turned into
aiokafka's errors and then into ours by `connectors.kafka.errors.translate`.

Topic configs are replaced as a whole (AlterConfigs): the catalog is the full list of a
topic's own configs, so an override made by hand is removed by the next apply, as the
plan shows. Each topic's type and consumer group prefixes are recorded in a compacted
topic (`connectors.kafka.catalog_record`), written last so a failed apply leaves it as it
was.
"""

from __future__ import annotations

from typing import Any

from aiokafka import errors as kafka_errors
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.admin import (
    AlterConfigsRequest,
    CreateAclsRequest,
    CreatePartitionsRequest,
    CreateTopicsRequest,
    DeleteAclsRequest,
    DeleteTopicsRequest,
    DescribeAclsRequest,
    DescribeConfigsRequest,
)
from aiokafka.protocol.metadata import MetadataRequest

from connectors.config.catalog.plan import AclBinding, Change, TopicState
from connectors.config.settings import KafkaSettings
from connectors.core.errors import ConnectorError, FatalError
from connectors.kafka.catalog_record import RECORD_CONFIGS
from connectors.kafka.errors import Where, principal, translate
from connectors.kafka.options import client_options

TIMEOUT_MS = 30_000
_TOPIC, _GROUP, _CLUSTER = 2, 3, 4
_RESOURCE = {"topic": _TOPIC, "group": _GROUP}
_RESOURCE_NAME = {v: k for k, v in _RESOURCE.items()}
_PATTERN = {"literal": 3, "prefixed": 4}
_PATTERN_NAME = {v: k for k, v in _PATTERN.items()}
_OPERATION = {"READ": 3, "WRITE": 4, "DESCRIBE": 8}
_OPERATION_NAME = {v: k for k, v in _OPERATION.items()}
_ANY, _ALLOW, _ALL_HOSTS = 1, 3, "*"
_DYNAMIC_TOPIC_CONFIG = 1
_UNKNOWN_TOPIC = 3
_ALREADY_EXISTS = 36
_SECURITY_DISABLED = 54

#: What each request needs, for the line that says which permission is missing.
_NEEDS = {
    "describe": ("DESCRIBE", "topic"),
    "configs": ("DESCRIBE_CONFIGS", "topic"),
    "create": ("CREATE", "topic"),
    "partitions": ("ALTER", "topic"),
    "alter": ("ALTER_CONFIGS", "topic"),
    "delete": ("DELETE", "topic"),
    "acls": ("DESCRIBE", "cluster"),
    "acl+": ("ALTER", "cluster"),
    "acl-": ("ALTER", "cluster"),
}


class Admin:
    """One connection to the cluster for reading and applying a catalog's state."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self.client = AIOKafkaClient(
            **client_options(settings), client_id="connector-topics", request_timeout_ms=TIMEOUT_MS
        )

    async def __aenter__(self) -> Admin:
        try:
            await self.client.bootstrap()
        except BaseException as exc:
            await self.client.close()
            raise self.error(exc, "describe", ()) from exc
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()

    def error(self, exc: BaseException, step: str, topics: tuple[str, ...]) -> ConnectorError:
        """`exc` as one line naming the missing permission and the resource."""
        operation, resource = _NEEDS.get(step, ("DESCRIBE", "topic"))
        if isinstance(exc, kafka_errors.ClusterAuthorizationFailedError) or (
            isinstance(exc, kafka_errors.TopicAuthorizationFailedError) and resource == "cluster"
        ):
            return FatalError(
                f"topics: not authorized: {operation} on the cluster denied to "
                f"{principal(self.settings)} ({type(exc).__name__})"
            )
        where = Where("topics", self.settings, operation, topics)
        return translate(exc, where)

    async def send(self, request: Any, step: str, topics: tuple[str, ...] = ()) -> Any:
        node = self.client.get_random_node()
        try:
            return await self.client.send(node, request)
        except ConnectorError:
            raise
        except Exception as exc:
            raise self.error(exc, step, topics) from exc

    def check(self, code: int, message: str | None, step: str, topics: tuple[str, ...]) -> None:
        if code != 0:
            raise self.error(
                kafka_errors.for_code(code)(message or ", ".join(topics)), step, topics
            )

    async def brokers(self) -> int:
        response = await self.send(MetadataRequest([]), "describe")
        return len(response.brokers)

    async def topics(self, names: list[str]) -> dict[str, TopicState]:
        """The existing topics of `names`, with their own (not default) configs."""
        if not names:
            return {}
        response = await self.send(MetadataRequest(sorted(names), False), "describe")
        found: dict[str, tuple[int, int]] = {}
        for topic in response.topics:
            code, name, partitions = topic[0], topic[1], topic[-1]
            if code == _UNKNOWN_TOPIC:
                continue
            self.check(code, name, "describe", (name,))
            replication = max((len(p[3]) for p in partitions), default=0)
            found[name] = (len(partitions), replication)
        configs = await self._configs(sorted(found))
        return {
            name: TopicState(name, parts, replicas, configs.get(name, {}))
            for name, (parts, replicas) in found.items()
        }

    async def _configs(self, names: list[str]) -> dict[str, dict[str, str]]:
        if not names:
            return {}
        request = DescribeConfigsRequest([(_TOPIC, name, None) for name in names])
        response = await self.send(request, "configs", tuple(names))
        configs: dict[str, dict[str, str]] = {}
        for resource in response.resources:
            code, message, _type, name, entries = resource[:5]
            self.check(code, message, "configs", (name,))
            configs[name] = {
                entry[0]: entry[1]
                for entry in entries
                if len(entry) > 3 and entry[3] == _DYNAMIC_TOPIC_CONFIG and entry[1] is not None
            }
        return configs

    async def acls(self) -> set[AclBinding] | None:
        """Every ALLOW ACL for any host on a topic or a group (the plan picks its own);
        None when the brokers run no authorizer."""
        found: set[AclBinding] = set()
        for resource in (_TOPIC, _GROUP):
            request = DescribeAclsRequest(resource, None, _ANY, None, None, _ANY, _ALLOW)
            response = await self.send(request, "acls")
            if response.error_code == _SECURITY_DISABLED:
                return None
            self.check(response.error_code, response.error_message, "acls", ())
            for _kind, name, pattern, entries in response.resources:
                for who, host, op, _permission in entries:
                    if host == _ALL_HOSTS and op in _OPERATION_NAME and pattern in _PATTERN_NAME:
                        found.add(
                            AclBinding(
                                who,
                                _RESOURCE_NAME[resource],
                                name,
                                _PATTERN_NAME[pattern],
                                _OPERATION_NAME[op],
                            )
                        )
        return found

    async def ensure_record_topic(self, name: str) -> None:
        """Create the compacted record topic unless it exists (replicated up to 3)."""
        if name in await self.topics([name]):
            return
        replication = min(3, await self.brokers())
        entry: tuple[Any, ...] = (name, 1, replication, [], list(RECORD_CONFIGS.items()))
        response = await self.send(CreateTopicsRequest([entry], TIMEOUT_MS, False), "create")
        for result in response.topic_errors:
            if result[1] != _ALREADY_EXISTS:
                self.check(result[1], result[2] if len(result) > 2 else None, "create", (name,))

    async def apply(self, change: Change) -> None:
        """Carry out one change of the plan (records are written by the caller)."""
        topic = (change.topic,)
        if change.kind == "create" and change.spec is not None:
            spec = change.spec
            entry: tuple[Any, ...] = (
                spec.name,
                spec.partitions,
                spec.replication,
                [],
                list(spec.topic_configs().items()),
            )
            response = await self.send(CreateTopicsRequest([entry], TIMEOUT_MS, False), "create")
            for result in response.topic_errors:
                self.check(result[1], result[2] if len(result) > 2 else None, "create", topic)
        elif change.kind == "partitions":
            request = CreatePartitionsRequest(
                [(change.topic, (change.partitions, None))], TIMEOUT_MS, False
            )
            response = await self.send(request, "partitions", topic)
            for name, code, message in response.topic_errors:
                self.check(code, message, "partitions", (name,))
        elif change.kind == "configs" and change.configs is not None:
            resource = (_TOPIC, change.topic, list(change.configs.items()))
            response = await self.send(AlterConfigsRequest([resource]), "alter", topic)
            for code, message, *_ in response.resources:
                self.check(code, message, "alter", topic)
        elif change.kind in ("acl+", "acl-") and change.acl is not None:
            await self._acl(change.kind, change.acl)
        elif change.kind == "delete":
            response = await self.send(DeleteTopicsRequest([change.topic], TIMEOUT_MS), "delete")
            for name, code, *_ in response.topic_error_codes:
                self.check(code, None, "delete", (name,))

    async def _acl(self, kind: str, acl: AclBinding) -> None:
        fields = (
            _RESOURCE[acl.resource],
            acl.name,
            _PATTERN[acl.pattern],
            acl.principal,
            _ALL_HOSTS,
            _OPERATION[acl.operation],
            _ALLOW,
        )
        if kind == "acl+":
            response = await self.send(CreateAclsRequest(*fields), kind)
            for code, message in response.creation_responses:
                self.check(code, message, kind, ())
        else:
            response = await self.send(DeleteAclsRequest(*fields), kind)
            for code, message, *_ in response.filter_responses:
                self.check(code, message, kind, ())

"""Heartbeats that name the static member (`KAFKA_GROUP_INSTANCE_ID`), so a fenced one knows.

aiokafka heartbeats with Heartbeat v1, which carries no `group.instance.id`. When a second
process joins with the same instance id, the broker gives it the first one's place, and the
first one's next heartbeat is answered UNKNOWN_MEMBER_ID: it rejoins and takes the place
back, and so on every few seconds, both processes writing everything. With the instance id
in the heartbeat (v3, Kafka 2.3+), the broker answers FENCED_INSTANCE_ID instead, which
`connectors.kafka.errors` makes fatal: the fenced process stops with one line and the other
keeps the partitions.
"""

from __future__ import annotations

from typing import Any

from aiokafka.consumer import group_coordinator
from aiokafka.protocol.api import Request, RequestStruct
from aiokafka.protocol.group import HeartbeatRequest_v0, HeartbeatRequest_v1, HeartbeatResponse_v1
from aiokafka.protocol.types import Int32, Schema, String


class HeartbeatRequest_v3(RequestStruct):  # type: ignore[misc]  # noqa: N801 - aiokafka's naming
    API_KEY = 12
    API_VERSION = 3
    RESPONSE_TYPE = HeartbeatResponse_v1  # v1 to v3 answer alike
    SCHEMA = Schema(
        ("group", String("utf-8")),
        ("generation_id", Int32),
        ("member_id", String("utf-8")),
        ("group_instance_id", String("utf-8")),
    )


_Versions = HeartbeatRequest_v0 | HeartbeatRequest_v1 | HeartbeatRequest_v3


class StaticHeartbeatRequest(Request[_Versions]):  # type: ignore[misc]
    """aiokafka's heartbeat, with the member's instance id from v3 on (set by the
    coordinator's `_send_req`, which knows it, as aiokafka builds it without)."""

    API_KEY = 12

    def __init__(self, group: str, generation_id: int, member_id: str) -> None:
        self._fields = (group, generation_id, member_id)
        self.group_instance_id: str | None = None

    def build(self, request_struct_class: type[Any]) -> Any:
        if request_struct_class.API_VERSION >= 3:
            return request_struct_class(*self._fields, self.group_instance_id)
        return request_struct_class(*self._fields)


def install() -> None:
    """Heartbeat with the instance id (idempotent)."""
    coordinator: Any = group_coordinator
    if coordinator.HeartbeatRequest is StaticHeartbeatRequest:
        return
    coordinator.HeartbeatRequest = StaticHeartbeatRequest
    send = coordinator.GroupCoordinator._send_req  # noqa: SLF001

    async def send_naming_the_member(self: Any, request: Any) -> Any:
        if isinstance(request, StaticHeartbeatRequest):
            request.group_instance_id = self._group_instance_id  # noqa: SLF001
        return await send(self, request)

    coordinator.GroupCoordinator._send_req = send_naming_the_member  # noqa: SLF001

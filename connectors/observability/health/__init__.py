"""Health over HTTP on the metrics port: `/metrics`, `/livez`, `/readyz`, `/healthz`.

- `judge`: the decisions, pure functions of offsets, activity and time;
- `status`: what the server needs from the pipeline (`PipelineStatus`), and the bridge to
  the runner's thread (`RunnerStatus`);
- `check`: the consumer check, remembering each look between probes;
- `server`: the HTTP server on a thread of its own.

Offsets are read from the brokers by `connectors.kafka.offsets`.
"""

from connectors.config.observability import HealthSettings
from connectors.observability.health.check import ConsumerCheck, ConsumerReport
from connectors.observability.health.judge import (
    Blocked,
    Observation,
    PartitionHealth,
    Reason,
    Waiting,
    Wedged,
    blocked,
    judge,
    wedged,
)
from connectors.observability.health.server import HealthServer
from connectors.observability.health.status import Activity, PipelineStatus, RunnerStatus, Running

__all__ = [
    "Activity",
    "Blocked",
    "ConsumerCheck",
    "ConsumerReport",
    "HealthServer",
    "HealthSettings",
    "Observation",
    "PartitionHealth",
    "PipelineStatus",
    "Reason",
    "RunnerStatus",
    "Running",
    "Waiting",
    "Wedged",
    "blocked",
    "judge",
    "wedged",
]

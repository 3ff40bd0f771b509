"""Settings of the observability components: logs, health checks, tracing.

They live with the other settings so that `resolve` validates them before anything starts,
without importing the HTTP server, the admin client or OpenTelemetry.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from connectors.config.settings import Names, Settings, split_names

__all__ = ["HealthSettings", "LogSettings", "TracingSettings"]


class LogSettings(Settings):
    model_config = SettingsConfigDict(
        env_prefix="LOG_", frozen=True, extra="ignore", case_sensitive=False
    )

    format: Literal["json", "text"] = Field("json", description="json or text")
    progress_interval_s: float = Field(
        30.0, ge=0, le=86_400, description="seconds 0-86400 between progress lines (0: none)"
    )

    @field_validator("format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


class HealthSettings(Settings):
    """How patient the consumer check is, and how often the lag gauges are refreshed."""

    model_config = SettingsConfigDict(
        env_prefix="HEALTH_", frozen=True, extra="ignore", case_sensitive=False
    )

    stuck_after_s: float = Field(
        120.0, gt=0, le=86_400, description="seconds 0-86400 behind without a commit"
    )
    sample_interval_s: float = Field(
        10.0, gt=0, le=3600, description="seconds 0-3600 between offset samples"
    )
    timeout_s: float = Field(5.0, gt=0, le=120, description="seconds 0-120 per broker call")
    wedged_after_s: float | None = Field(
        None,
        gt=0,
        le=86_400,
        description="seconds 0-86400 one stage may run before /livez fails "
        "(default HEALTH_STUCK_AFTER_S)",
    )

    @property
    def wedge_deadline_s(self) -> float:
        return self.wedged_after_s if self.wedged_after_s is not None else self.stuck_after_s


Sampler = Literal[
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
]


class TracingSettings(Settings):
    """The standard OpenTelemetry variables this runtime honours itself."""

    model_config = SettingsConfigDict(
        env_prefix="OTEL_", frozen=True, extra="ignore", case_sensitive=False
    )

    sdk_disabled: bool = Field(False, description="true or false")
    traces_exporter: Names = Field((), description="comma-separated: otlp, console or none")
    exporter_otlp_endpoint: str | None = Field(None, description="a URL such as http://host:4318")
    exporter_otlp_traces_endpoint: str | None = Field(None, description="a URL (used as is)")
    exporter_otlp_protocol: Literal["http/protobuf"] = Field(
        "http/protobuf", description="http/protobuf (the gRPC exporter is not installed)"
    )
    service_name: str | None = Field(None, description="a service name (default CONNECTOR_NAME)")
    traces_sampler: Sampler = Field(
        "parentbased_always_on", description="an OpenTelemetry sampler name"
    )
    traces_sampler_arg: float = Field(1.0, ge=0, le=1, description="a ratio 0-1")

    @field_validator("traces_exporter", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return split_names(value.lower() if isinstance(value, str) else value)

    @field_validator("traces_exporter")
    @classmethod
    def _known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = set(value) - {"otlp", "console", "none"}
        if unknown:
            raise ValueError(f"unknown exporter {', '.join(sorted(unknown))}")
        return value

    @property
    def exporters(self) -> tuple[str, ...]:
        """What to export to; empty means tracing is off (the default, unlike the SDK's)."""
        if self.sdk_disabled:
            return ()
        if self.traces_exporter:
            return tuple(name for name in self.traces_exporter if name != "none")
        if self.exporter_otlp_endpoint or self.exporter_otlp_traces_endpoint:
            return ("otlp",)
        return ()

    @property
    def traces_endpoint(self) -> str | None:
        if self.exporter_otlp_traces_endpoint:
            return self.exporter_otlp_traces_endpoint
        if self.exporter_otlp_endpoint:
            return self.exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
        return None

"""Settings of transforms that do I/O: how many async calls at once, `ctx.http`, `ctx.cache`.

Validated by `resolve` with every other variable, before anything connects.
"""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from connectors.config.settings import Settings, readable_file
from connectors.core.context import ResourceSettings

__all__ = ["TransformSettings"]


class TransformSettings(Settings):
    model_config = SettingsConfigDict(
        env_prefix="TRANSFORM_", frozen=True, extra="ignore", case_sensitive=False
    )

    concurrency: int = Field(
        16, ge=1, le=4096, description="an integer 1-4096 (1: one call at a time)"
    )
    http_timeout_s: float = Field(
        10.0, gt=0, le=600, description="seconds (0-600] per request of ctx.http"
    )
    http_verify_tls: bool = Field(
        True, description="true or false (false: ctx.http accepts any certificate)"
    )
    http_ca_file: str | None = Field(
        None, description="path of a PEM CA bundle ctx.http verifies servers with"
    )
    cache_ttl_s: float = Field(
        300.0, gt=0, le=604_800, description="seconds (0-604800] a ctx.cache value is kept"
    )
    cache_max_entries: int = Field(
        10_000, ge=1, le=100_000_000, description="an integer 1-100000000"
    )

    @field_validator("http_ca_file")
    @classmethod
    def _readable(cls, value: str | None) -> str | None:
        return readable_file(value)

    def resources(self) -> ResourceSettings:
        """What `ctx.http` and `ctx.cache` are built from."""
        return ResourceSettings(
            http_timeout_s=self.http_timeout_s,
            http_verify_tls=self.http_verify_tls,
            http_ca_file=self.http_ca_file,
            cache_ttl_s=self.cache_ttl_s,
            cache_max_entries=self.cache_max_entries,
            http_max_connections=max(100, self.concurrency),
        )

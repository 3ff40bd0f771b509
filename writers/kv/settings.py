"""`KV_*` settings: which store, where, and how durable."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from connectors import Settings, mask_url

DEFAULT_URL = "lmdb:./.local/kv"


class KVSettings(Settings):
    model_config = SettingsConfigDict(
        env_prefix="KV_", frozen=True, extra="ignore", case_sensitive=False
    )

    url: str = Field(
        DEFAULT_URL,
        description="lmdb:PATH (embedded) or redis://[:password@]host:port/db",
    )
    map_size_mb: int = Field(
        1024, ge=1, le=1_048_576, description="LMDB map size in MiB, 1-1048576"
    )
    sync: bool = Field(True, description="true or false (LMDB fsync on every commit)")
    key_prefix: str = Field("", description="text put before every key")

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        scheme = value.split(":", 1)[0].lower() if ":" in value else ""
        if scheme == "lmdb":
            if not lmdb_path(value):
                raise ValueError("an lmdb: URL needs a path")
        elif scheme in ("redis", "rediss"):
            parts = urlsplit(value)
            if not parts.hostname:
                raise ValueError("a redis URL needs a host")
            try:
                _ = parts.port
            except ValueError as exc:
                raise ValueError("a redis URL port must be a number") from exc
        else:
            raise ValueError(f"an lmdb: or redis:// URL, not scheme {scheme or '(none)'!r}")
        return value

    @property
    def scheme(self) -> str:
        return self.url.split(":", 1)[0].lower()

    def describe(self) -> str:
        return (
            f"KV_URL={mask_url(self.url)} KV_MAP_SIZE_MB={self.map_size_mb} "
            f"KV_SYNC={str(self.sync).lower()} KV_KEY_PREFIX={self.key_prefix!r}"
        )


def lmdb_path(url: str) -> str:
    """`lmdb:./x`, `lmdb:/abs/x` and `lmdb:///abs/x` → the filesystem path."""
    rest = url.split(":", 1)[1]
    if rest.startswith("//"):
        rest = rest[2:]
    return rest

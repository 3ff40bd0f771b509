"""`KV_*` settings: which store, where, and how durable."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from connectors import Settings, encoding_hint

DEFAULT_URL = "lmdb:./.local/kv"
#: LMDB refuses keys longer than 511 bytes (MDB_MAXKEYSIZE); the prefix leaves room for keys.
LMDB_PREFIX_MAX = 255


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
    key_prefix: str = Field(
        "",
        description=f"text put before every key (with lmdb: at most {LMDB_PREFIX_MAX} bytes)",
    )
    replay_guard_keys: int = Field(
        100_000,
        ge=0,
        le=100_000_000,
        description="an integer 0-100000000 (LMDB: Kafka keys of dead-lettered or dropped "
        "records remembered so that a replay of them never overwrites newer data)",
    )

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        scheme = value.split(":", 1)[0].lower() if ":" in value else ""
        if scheme == "lmdb":
            if not lmdb_path(value):
                raise ValueError("an lmdb: URL needs a path")
            _lmdb_directory(Path(lmdb_path(value)))
        elif scheme in ("redis", "rediss"):
            parts = urlsplit(value)
            if not parts.hostname:
                raise ValueError("a redis URL needs a host" + encoding_hint(value))
            try:
                _ = parts.port
            except ValueError as exc:
                hint = encoding_hint(value)
                raise ValueError(f"a redis URL port must be a number{hint}") from exc
        else:
            # Only a plausible scheme is echoed: what precedes a ':' may be a password.
            shown = repr(scheme) if _SCHEME.fullmatch(scheme) else "(none)"
            raise ValueError(f"an lmdb: or redis:// URL, not scheme {shown}")
        return value

    @model_validator(mode="after")
    def _prefix_leaves_room(self) -> KVSettings:
        size = len(self.key_prefix.encode())
        if self.scheme == "lmdb" and size > LMDB_PREFIX_MAX:
            raise ValueError(
                f"KV_KEY_PREFIX is {size} bytes; an LMDB store allows at most "
                f"{LMDB_PREFIX_MAX} (its keys, prefix included, are at most 511 bytes)"
            )
        return self

    @property
    def scheme(self) -> str:
        return self.url.split(":", 1)[0].lower()


_SCHEME = re.compile(r"[a-z][a-z0-9+.-]{0,30}")


def _lmdb_directory(path: Path) -> None:
    """An LMDB store is a directory: an existing one, or one that can be created (its
    nearest existing parent is a writable directory). A regular file there would be
    refused by LMDB only when the writer opens it."""
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"an lmdb: URL naming a directory; {path} is not one")
        return
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"an lmdb: URL under a directory; {parent} is not one")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"an lmdb: URL where the store can be created; {parent} is not writable")


def lmdb_path(url: str) -> str:
    """`lmdb:./x`, `lmdb:/abs/x` and `lmdb:///abs/x` → the filesystem path."""
    rest = url.split(":", 1)[1]
    if rest.startswith("//"):
        rest = rest[2:]
    return rest

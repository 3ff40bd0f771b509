"""`HTTP_*` settings: where to send, with which method and headers, how much at once.

`HTTP_HEADERS` usually carries a bearer token, so the whole variable is a secret: its
values never appear in `connector check`, in a configuration error or in a log line; only
the header names are shown.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from connectors import Settings, encoding_hint, mask_url, readable_file
from writers.http.routing import Template, parse

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def parse_headers(text: str) -> list[tuple[str, str]]:
    """`Name: value; Name2: value2` or a JSON object → (name, value) pairs; ValueError
    names the bad header but never echoes a value."""
    text = text.strip()
    if not text:
        return []
    pairs: list[tuple[str, str]] = []
    if text.startswith("{"):
        try:
            loaded = json.loads(text)
        except ValueError:
            raise ValueError("a JSON object of header names to text values") from None
        if not isinstance(loaded, dict) or not all(isinstance(v, str) for v in loaded.values()):
            raise ValueError("a JSON object of header names to text values")
        pairs = [(str(k).strip(), v.strip()) for k, v in loaded.items()]
    else:
        for n, part in enumerate(p for p in text.split(";") if p.strip()):
            name, sep, value = part.partition(":")
            if not sep:
                raise ValueError(f"'Name: value' pairs separated by ';' (item {n + 1} has no ':')")
            pairs.append((name.strip(), value.strip()))
    for name, value in pairs:
        if not _TOKEN.match(name):
            raise ValueError(f"header names of letters, digits and -; {name!r} is not one")
        if "\r" in value or "\n" in value:
            raise ValueError(f"header {name} has a line break in its value")
    return pairs


_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
_CREDENTIAL_WORDS = ("token", "secret", "key", "auth", "password", "signature")


def is_credential(name: str) -> bool:
    """Whether a header named `name` likely carries a credential."""
    lowered = name.lower()
    return lowered in _CREDENTIAL_HEADERS or any(w in lowered for w in _CREDENTIAL_WORDS)


def mask_query(url: str) -> str:
    """`url` with its password and every query value masked: tokens often travel there."""
    parts = urlsplit(mask_url(url))
    if not parts.query:
        return urlunsplit(parts)
    masked = urlencode([(k, "*****") for k, _ in parse_qsl(parts.query, keep_blank_values=True)])
    return urlunsplit(parts._replace(query=masked)).replace("%2A", "*")


class HTTPSettings(Settings):
    model_config = SettingsConfigDict(
        env_prefix="HTTP_", frozen=True, extra="ignore", case_sensitive=False
    )

    url: str = Field(
        description="an http:// or https:// URL, or a template of one with {key}, {topic}, "
        "{partition}, {offset} or {value.<field>} placeholders"
    )
    method: Literal["POST", "PUT", "PATCH"] = Field("POST", description="POST, PUT or PATCH")
    delete_method: Literal["DELETE", "POST", "PUT", "PATCH"] | None = Field(
        None,
        description="DELETE, POST, PUT or PATCH (deletions sent alone, without a body); "
        "empty: deletions go with HTTP_METHOD as a document with a null value",
    )
    envelope: bool = Field(
        False,
        description="true (each document is {key, topic, partition, offset, timestamp_ms, "
        "value}) or false (the output alone)",
    )
    max_requests_per_s: float = Field(
        0.0, ge=0, le=1_000_000, description="requests per second, 0-1000000 (0: no limit)"
    )
    max_concurrency: int | None = Field(
        None,
        ge=1,
        le=256,
        description="an integer 1-256 (requests at once; default HTTP_MAX_IN_FLIGHT)",
    )
    headers: SecretStr = Field(
        SecretStr(""), description="'Name: value; Name2: value2' or a JSON object"
    )
    batch: bool = Field(True, description="true (one request per partition of a batch) or false")
    batch_max_messages: int = Field(
        500,
        ge=1,
        le=1_000_000,
        description="an integer 1-1000000 (most documents in one request; more are sent as "
        "several requests in offset order, the outputs of one record always together)",
    )
    format: Literal["json", "ndjson"] = Field(
        "json", description="json (an array per batch) or ndjson (one document per line)"
    )
    timeout_s: float = Field(10.0, gt=0, le=600, description="seconds (0-600] per request")
    verify_tls: bool = Field(True, description="true or false (false: accept any certificate)")
    ca_file: str | None = Field(None, description="path of a PEM CA bundle to verify the server")
    allow_insecure_auth: bool = Field(
        False, description="true or false (true: credentials may travel over plain http://)"
    )
    max_in_flight: int = Field(
        4, ge=1, le=256, description="an integer 1-256 (older name of HTTP_MAX_CONCURRENCY)"
    )
    idempotency_header: str = Field(
        "Idempotency-Key", pattern=_TOKEN.pattern, description="a header name"
    )
    fatal_statuses: Annotated[tuple[int, ...], NoDecode] = Field(
        (401, 403, 407),
        description="comma-separated 4xx statuses that stop the connector instead of "
        "dead-lettering the records",
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip()
        template = parse(value)
        parts = urlsplit(template.sample())
        try:
            port_ok = parts.port is None or parts.port > 0
        except ValueError:
            port_ok = False
        if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
            raise ValueError(
                "an http:// or https:// URL with a host and a port 1-65535" + encoding_hint(value)
            )
        return value

    @field_validator("headers")
    @classmethod
    def _parsable(cls, value: SecretStr) -> SecretStr:
        parse_headers(value.get_secret_value())
        return value

    @field_validator("format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("method", "delete_method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().upper()
            return value or None
        return value

    @field_validator("max_concurrency", mode="before")
    @classmethod
    def _unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("fatal_statuses", mode="before")
    @classmethod
    def _statuses(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = tuple(int(part) for part in value.split(",") if part.strip())
            except ValueError:
                raise ValueError("comma-separated status codes") from None
        if any(not 400 <= code < 500 for code in value):
            raise ValueError("4xx status codes only")
        return value

    @field_validator("ca_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    _readable = field_validator("ca_file")(readable_file)

    @model_validator(mode="after")
    def _no_credentials_in_clear(self) -> HTTPSettings:
        if urlsplit(self.url).scheme == "http" and not self.allow_insecure_auth:
            sent = [name for name, _ in self.header_pairs() if is_credential(name)]
            if sent:
                raise ValueError(
                    f"HTTP_HEADERS would send {', '.join(sent)} over plain http:// in HTTP_URL; "
                    "use https:// or set HTTP_ALLOW_INSECURE_AUTH=true"
                )
        return self

    @property
    def template(self) -> Template:
        return parse(self.url)

    @property
    def concurrency(self) -> int:
        """HTTP_MAX_CONCURRENCY, or HTTP_MAX_IN_FLIGHT (its older name) when unset."""
        return self.max_concurrency or self.max_in_flight

    def header_pairs(self) -> list[tuple[str, str]]:
        return parse_headers(self.headers.get_secret_value())

    def shown_values(self) -> dict[str, str]:
        """Header names with their values masked, the URL's query tokens masked, and what
        an unset variable stands for."""
        names = "; ".join(f"{name}: *****" for name, _ in self.header_pairs())
        return {
            "HTTP_URL": mask_query(self.url),
            "HTTP_HEADERS": names or "unset",
            "HTTP_DELETE_METHOD": self.delete_method or "unset -> HTTP_METHOD, as a document",
            "HTTP_CA_FILE": self.ca_file or "unset -> the system's CAs",
            "HTTP_MAX_CONCURRENCY": str(self.max_concurrency)
            if self.max_concurrency
            else f"unset -> HTTP_MAX_IN_FLIGHT ({self.concurrency})",
        }

"""`S3_*` settings: where objects go, how they are named, encoded and sized.

Credentials are deliberately not settings: the S3 client takes them from the standard AWS
chain (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`, web identity on
EKS, the ECS or EC2 metadata endpoints), so a secret never passes through our models,
logs or `connector check`.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import SettingsConfigDict

from connectors import Settings, mask_url
from writers.s3.template import DEFAULT, DEFAULT_DATED, KeyTemplate

MIB = 1024 * 1024
MIN_PART_BYTES = 5 * MIB
"""S3's (and R2's) smallest part of a multipart upload, the last one excepted."""


class S3Settings(Settings):
    model_config = SettingsConfigDict(
        env_prefix="S3_", frozen=True, extra="ignore", case_sensitive=False
    )

    bucket: str = Field(
        pattern=r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$",
        description="a bucket name: 3-63 lowercase letters, digits, '.' or '-'",
    )
    prefix: str = Field("", description="a key prefix such as logs/audit (no leading '/')")
    endpoint_url: str | None = Field(
        None,
        description="http(s)://host[:port] of an S3-compatible service "
        "(R2: https://<account>.r2.cloudflarestorage.com); unset for AWS",
    )
    region: str | None = Field(
        None, description="a region such as eu-west-1 (R2: auto); unset: AWS_REGION or us-east-1"
    )
    addressing_style: Literal["auto", "path", "virtual"] = Field(
        "auto", description="auto, path or virtual (auto: virtual on AWS, path elsewhere)"
    )
    format: Literal["ndjson", "protobuf"] = Field(
        "ndjson", description="ndjson or protobuf (length-delimited)"
    )
    compression: Literal["gzip", "none"] = Field("gzip", description="gzip or none")
    partition_by: Literal["none", "date"] = Field(
        "none", description="none or date (a dt=YYYY-MM-DD folder from the event time)"
    )
    key_template: str | None = Field(
        None,
        description="an object key template with {topic}, {partition}, {first_offset} and "
        "{last_offset}, and optionally {year}, {month}, {day}, {hour} and {value.<field>}; "
        "unset: the default layout",
    )
    time_field: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$",
        description="a (dotted) field of the output holding the event time; "
        "unset: the Kafka record timestamp",
    )
    object_max_bytes: int = Field(
        64 * MIB,
        ge=1024,
        le=4096 * MIB,
        description="bytes 1024-4294967296 per object, as uploaded (after compression)",
    )
    flush_interval_s: float = Field(
        60.0, gt=0, le=86_400, description="seconds (0-86400] before a partial object is flushed"
    )
    part_bytes: int = Field(
        8 * MIB,
        ge=MIN_PART_BYTES,
        le=5 * 1024 * MIB,
        description="bytes 5242880-5368709120; larger objects use multipart upload",
    )
    upload_concurrency: int = Field(8, ge=1, le=256, description="an integer 1-256")
    timeout_s: float = Field(60.0, gt=0, le=3600, description="seconds (0-3600] per request")

    @field_validator("prefix", mode="before")
    @classmethod
    def _strip_slashes(cls, value: Any) -> Any:
        return value.strip().strip("/") if isinstance(value, str) else value

    @field_validator("key_template")
    @classmethod
    def _template(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if info.data.get("partition_by") == "date":
            raise ValueError(
                "S3_PARTITION_BY=date applies to the default layout only; with a template "
                "put dt={year}-{month}-{day} in it and unset S3_PARTITION_BY"
            )
        KeyTemplate(value)
        return value

    @field_validator("endpoint_url", "region", "key_template", "time_field", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value.strip() if isinstance(value, str) else value

    @field_validator("endpoint_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("an http:// or https:// URL with a host")
        if parts.path not in ("", "/") or parts.query:
            raise ValueError("a URL without path or query (the bucket is S3_BUCKET)")
        return value.rstrip("/")

    @field_validator("addressing_style", "format", "compression", "partition_by", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @cached_property
    def template(self) -> KeyTemplate:
        """`S3_KEY_TEMPLATE`, or the default layout it replaces."""
        if self.key_template is not None:
            return KeyTemplate(self.key_template)
        return KeyTemplate(DEFAULT_DATED if self.partition_by == "date" else DEFAULT)

    @property
    def virtual_hosted(self) -> bool:
        if self.addressing_style == "auto":
            return self.endpoint_url is None
        return self.addressing_style == "virtual"

    def shown_values(self) -> dict[str, str]:
        """What an unset or `auto` variable stands for; the endpoint's password masked."""
        style = "virtual" if self.virtual_hosted else "path"
        return {
            "S3_ENDPOINT_URL": mask_url(self.endpoint_url) if self.endpoint_url else "unset -> AWS",
            "S3_REGION": self.region or "unset -> AWS_REGION",
            "S3_ADDRESSING_STYLE": f"{self.addressing_style} -> {style}"
            if self.addressing_style == "auto"
            else style,
            "S3_KEY_TEMPLATE": self.key_template or f"unset -> {self.template.text}",
            "S3_TIME_FIELD": self.time_field or "unset -> the record's timestamp",
        }

"""The one door to the bucket: `ObjectClient`, and its obstore implementation.

Error tree at this boundary (obstore → ours)::

    PermissionDeniedError, UnauthenticatedError   → FatalError  (credentials, policy)
    FileNotFoundError on PUT (NoSuchBucket)       → FatalError
    HTTP 4xx other than 408/429, InvalidPathError → FatalError  (a request S3 will never take)
    HTTP 5xx, 408, 429, connection, timeout       → RetriableError (the runner backs off)

obstore's own retry loop is switched off: retries, backoff and the pause of consumption
live once, in the runner. The writer only sees `ObjectClient`, so tests can put a client
of their own (an in-memory store, one that fails on chosen keys) in its place.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from connectors import ConnectorError, FatalError, RetriableError
from writers.s3.settings import S3Settings

try:
    import obstore
    from obstore import exceptions as obstore_errors
    from obstore.store import S3Store
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "WRITER=s3 needs the obstore client: pip install 'kafka-connectors[s3]'"
    ) from exc

if TYPE_CHECKING:
    from obstore.store import ClientConfig, S3Config

_STATUS = re.compile(r"status code: (\d{3})")


class ObjectClient(Protocol):
    """What the writer needs of a bucket; every method raises our errors, never a client's."""

    async def put(self, key: str, body: bytes, headers: Mapping[str, str]) -> None:
        """Store `body` under `key` with these `Content-*` headers, replacing any object."""

    async def keys_after(self, folder: str, start_after: str) -> list[str]:
        """Every key under `folder` (recursively) that sorts after `start_after`."""

    async def probe(self) -> None:
        """Prove the bucket, the credentials and the list permission, cheaply."""


def endpoint_for(settings: S3Settings) -> str | None:
    """obstore wants the bucket in the host for virtual-hosted requests to a custom endpoint."""
    if settings.endpoint_url is None or not settings.virtual_hosted:
        return settings.endpoint_url
    parts = urlsplit(settings.endpoint_url)
    return urlunsplit(parts._replace(netloc=f"{settings.bucket}.{parts.netloc}"))


def open_store(settings: S3Settings) -> S3Store:
    """An S3Store; credentials and unset options come from the standard AWS variables."""
    config: S3Config = {"virtual_hosted_style_request": settings.virtual_hosted}
    endpoint = endpoint_for(settings)
    if endpoint is not None:
        config["endpoint"] = endpoint
    if settings.region is not None:
        config["region"] = settings.region
    client: ClientConfig = {
        "timeout": timedelta(seconds=settings.timeout_s),
        "connect_timeout": timedelta(seconds=min(10.0, settings.timeout_s)),
    }
    if endpoint is not None and endpoint.startswith("http://"):
        client["allow_http"] = True
    try:
        return S3Store(
            settings.bucket, config=config, client_options=client, retry_config={"max_retries": 0}
        )
    except obstore_errors.BaseError as exc:
        raise FatalError(f"S3 client configuration rejected: {exc}") from exc


def as_ours(exc: BaseException, where: str) -> ConnectorError:
    """Classify an obstore (or socket) failure; `where` names the bucket or key."""
    text = str(exc).split("\n\nDebug source:", 1)[0]
    if isinstance(exc, obstore_errors.PermissionDeniedError | obstore_errors.UnauthenticatedError):
        return FatalError(f"S3 refused our credentials or policy for {where}: {text}")
    if isinstance(exc, FileNotFoundError):
        return FatalError(f"S3 bucket of {where} does not exist: {text}")
    if isinstance(exc, obstore_errors.InvalidPathError):
        return FatalError(f"S3 cannot take {where}: {text}")
    status = _STATUS.search(text)
    if status is not None:
        code = int(status.group(1))
        if 400 <= code < 500 and code not in (408, 429):
            return FatalError(f"S3 rejected {where} with HTTP {code}: {text}")
    return RetriableError(f"S3 request for {where} failed: {text}")


class ObstoreClient:
    """`ObjectClient` over any obstore store (S3 in production, memory in unit tests)."""

    def __init__(self, store: Any, bucket: str, prefix: str, part_bytes: int) -> None:
        self._store = store
        self._bucket = bucket
        self._prefix = prefix
        self._part = part_bytes

    async def put(self, key: str, body: bytes, headers: Mapping[str, str]) -> None:
        try:
            await obstore.put_async(
                self._store, key, body, attributes=dict(headers),
                use_multipart=len(body) > self._part, chunk_size=self._part, max_concurrency=4,
            )  # fmt: skip
        except (obstore_errors.BaseError, OSError) as exc:
            raise as_ours(exc, f"s3://{self._bucket}/{key}") from exc

    async def keys_after(self, folder: str, start_after: str) -> list[str]:
        keys: list[str] = []
        try:
            stream = obstore.list(self._store, folder or None, offset=start_after, chunk_size=1000)
            async for chunk in stream:
                keys.extend(meta["path"] for meta in chunk)
        except (obstore_errors.BaseError, OSError) as exc:
            raise as_ours(exc, f"s3://{self._bucket}/{folder}/") from exc
        return keys

    async def probe(self) -> None:
        """One ListObjectsV2 of at most one key under the prefix."""
        try:
            stream = obstore.list(self._store, self._prefix or None, chunk_size=1)
            await anext(aiter(stream), None)
        except (obstore_errors.BaseError, OSError) as exc:
            raise as_ours(exc, f"s3://{self._bucket}/{self._prefix}") from exc


def s3_client(settings: S3Settings) -> ObstoreClient:
    store = open_store(settings)
    return ObstoreClient(store, settings.bucket, settings.prefix, settings.part_bytes)

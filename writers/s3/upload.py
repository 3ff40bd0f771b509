"""The S3/R2 writer: one object per partition (and day) per write, uploaded with obstore.

Error tree at this boundary (obstore → ours)::

    PermissionDeniedError, UnauthenticatedError   → FatalError  (credentials, policy)
    FileNotFoundError on PUT (NoSuchBucket)       → FatalError
    HTTP 4xx other than 408/429, InvalidPathError → FatalError  (a request S3 will never take)
    HTTP 5xx, 408, 429, connection, timeout       → RetriableError (the runner backs off)
    a delete entry with S3_FORMAT=protobuf        → PoisonError

obstore's own retry loop is switched off: retries, backoff and the pause of consumption
live once, in the runner.

Replays. Objects are named by the first and last offset they hold, but after a crash the
runner may replay from the committed offset with different batch boundaries than the run
that died, which would give overlapping objects under different names. So whenever a
partition's records do not continue where this writer last left it (first write after a
start, a rebalance, a rewind), the writer lists that partition's folder from the replay
offset (`start-after`, one request) and skips every record an existing object already
holds. Objects never straddle a committed offset, because the runner commits exactly what
one write covered, so only objects the crashed run left past that offset are found.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from connectors import (
    ConnectorError,
    Entry,
    FatalError,
    FlushPolicy,
    RetriableError,
    TopicPartition,
    WriteBatch,
    WriterContext,
    worst,
)
from writers.s3 import formats
from writers.s3.naming import Folder, day_of, offsets_of
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

_log = logging.getLogger("connectors.writers.s3")
_STATUS = re.compile(r"status code: (\d{3})")


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


@dataclass
class _Partition:
    """What this writer knows of one partition's objects since it last lost track of it."""

    next_offset: int = -1  # the offset after the last record this writer saw written
    anchor: int = 0  # where the current run of this partition started (a replay point)
    stored: dict[str | None, int] = field(default_factory=dict)  # day → last offset stored


@dataclass(frozen=True, slots=True)
class _Object:
    tp: TopicPartition
    folder: Folder
    entries: list[Entry]

    @property
    def first(self) -> int:
        return self.entries[0].source.offset

    @property
    def last(self) -> int:
        return self.entries[-1].source.offset


class S3Writer:
    def __init__(self, settings: S3Settings, context: WriterContext) -> None:
        self._settings = settings
        self._context = context
        self._store = open_store(settings)
        self._where = f"s3://{settings.bucket}/{settings.prefix}"
        self._extension = formats.extension(settings.format, settings.compression)
        self._content_type = formats.content_type(settings.format, settings.compression)
        self._partitions: dict[TopicPartition, _Partition] = {}
        self._uploads = asyncio.Semaphore(settings.upload_concurrency)
        self.flush_policy = FlushPolicy(
            max_bytes=settings.object_max_bytes, max_interval_s=settings.flush_interval_s
        )

    async def start(self) -> None:
        await self.check()

    async def check(self) -> None:
        """One ListObjectsV2 of at most one key: proves the bucket, the credentials and the
        list permission the replay guard needs."""
        try:
            stream = obstore.list(self._store, self._settings.prefix or None, chunk_size=1)
            await anext(aiter(stream), None)
        except (obstore_errors.BaseError, OSError) as exc:
            raise as_ours(exc, self._where) from exc

    async def write(self, batch: WriteBatch) -> None:
        self._track(batch)
        objects = await self._objects(batch)
        results = await asyncio.gather(
            *(self._upload(obj) for obj in objects), return_exceptions=True
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise worst(failures)
        for tp, next_offset in batch.batch.next_offsets.items():
            self._partitions[tp].next_offset = next_offset

    def _track(self, batch: WriteBatch) -> None:
        """Forget what we knew of a partition whose records do not continue from our last
        write: its folder is listed again from the new starting offset."""
        firsts: dict[TopicPartition, int] = {}
        for record in batch.batch.records:
            tp = (record.topic, record.partition)
            firsts[tp] = min(firsts.get(tp, record.offset), record.offset)
        for tp, first in firsts.items():
            known = self._partitions.get(tp)
            if known is None or known.next_offset != first:
                self._partitions[tp] = _Partition(anchor=first)

    def _folder(self, entry: Entry) -> Folder:
        source = entry.source
        day = day_of(source.timestamp_ms) if self._settings.partition_by == "date" else None
        return Folder(self._settings.prefix, source.topic, source.partition, day)

    async def _objects(self, batch: WriteBatch) -> list[_Object]:
        grouped: dict[Folder, list[Entry]] = {}
        for entry in batch.entries:
            grouped.setdefault(self._folder(entry), []).append(entry)
        objects = []
        for folder, entries in grouped.items():
            tp = (folder.topic, folder.partition)
            stored = await self._stored_up_to(tp, folder)
            fresh = [e for e in entries if e.source.offset > stored]
            if len(fresh) < len(entries):
                _log.info(
                    "%s: %d of %d entries are already stored (up to offset %d), skipped",
                    folder.path, len(entries) - len(fresh), len(entries), stored,
                )  # fmt: skip
            if fresh:
                objects.append(_Object(tp, folder, fresh))
        return objects

    async def _stored_up_to(self, tp: TopicPartition, folder: Folder) -> int:
        state = self._partitions.setdefault(tp, _Partition(anchor=0))
        if folder.day not in state.stored:
            state.stored[folder.day] = await self._list_last(folder, state.anchor)
        return state.stored[folder.day]

    async def _list_last(self, folder: Folder, anchor: int) -> int:
        """The last offset held by objects in `folder` starting at or after `anchor`."""
        last = anchor - 1
        try:
            stream = obstore.list(
                self._store, folder.path, offset=folder.start_after(anchor), chunk_size=1000
            )
            async for chunk in stream:
                for meta in chunk:
                    offsets = offsets_of(meta["path"])
                    if offsets is not None and offsets[0] >= anchor:
                        last = max(last, offsets[1])
        except (obstore_errors.BaseError, OSError) as exc:
            raise as_ours(exc, f"s3://{self._settings.bucket}/{folder.path}/") from exc
        if last >= anchor:
            _log.info("%s: objects up to offset %d already exist", folder.path, last)
        return last

    async def _upload(self, obj: _Object) -> None:
        body = formats.render(obj.entries, self._settings.format, self._settings.compression)
        key = obj.folder.key(obj.first, obj.last, self._extension)
        part = self._settings.part_bytes
        async with self._uploads:
            try:
                await obstore.put_async(
                    self._store, key, body,
                    attributes={"Content-Type": self._content_type},
                    use_multipart=len(body) > part, chunk_size=part, max_concurrency=4,
                )  # fmt: skip
            except (obstore_errors.BaseError, OSError) as exc:
                raise as_ours(exc, f"s3://{self._settings.bucket}/{key}") from exc
        state = self._partitions[obj.tp]
        state.stored[obj.folder.day] = max(state.stored.get(obj.folder.day, -1), obj.last)
        _log.debug("uploaded s3://%s/%s (%d bytes)", self._settings.bucket, key, len(body))

    async def close(self) -> None:
        """obstore keeps no connection that needs closing; nothing is buffered here."""

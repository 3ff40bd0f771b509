"""The S3/R2 writer: the entries of a write routed to paths, cut into objects, uploaded.

One write: every entry is routed (`routing`: `S3_KEY_TEMPLATE`, or the default layout),
the records a crashed run already stored are skipped (`replay`), each path's records are
cut into objects no larger than `S3_OBJECT_MAX_BYTES` (`split`), and the objects go up in
parallel (`S3_UPLOAD_CONCURRENCY`).

Partial success is per object: when some objects were uploaded and another failed, the
error carries `stored`, the entries of the uploaded objects (and of those skipped as
already stored), so the runner's retry hands over only the rest; the objects left get the
same names on the retry, since names come from the records they hold. A record no path can
be given is poison (stage `write`): the objects of the other records are uploaded first,
and reported stored with the rejection.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from prometheus_client import Counter

from connectors import (
    FlushPolicy,
    RetriableError,
    TopicPartition,
    WriteBatch,
    WriterContext,
    metrics,
    worst,
)
from writers.s3 import formats
from writers.s3.client import ObjectClient, as_ours, endpoint_for, open_store, s3_client
from writers.s3.replay import ReplayGuard, covered
from writers.s3.routing import Group, Router
from writers.s3.settings import S3Settings
from writers.s3.split import split
from writers.s3.template import Route

__all__ = ["S3Writer", "as_ours", "endpoint_for", "open_store"]

_log = logging.getLogger("connectors.writers.s3")

OBJECTS = Counter(
    "connector_s3_objects_uploaded",
    "Objects the S3 writer uploaded (replays of the same object included).",
    ["connector", "writer", "topic"],
    registry=metrics.REGISTRY,
)
OBJECT_BYTES = Counter(
    "connector_s3_object_bytes_uploaded",
    "Bytes of the objects the S3 writer uploaded, as sent (after compression).",
    ["connector", "writer", "topic"],
    registry=metrics.REGISTRY,
)


@dataclass(frozen=True, slots=True)
class _Object:
    tp: TopicPartition
    route: Route
    first: int
    last: int
    records: int
    indices: tuple[int, ...]
    body: bytes

    @property
    def key(self) -> str:
        return self.route.key(self.first, self.last)


class S3Writer:
    def __init__(
        self, settings: S3Settings, context: WriterContext, client: ObjectClient | None = None
    ) -> None:
        self._settings = settings
        self._context = context
        self._client = client if client is not None else s3_client(settings)
        self._guard = ReplayGuard(self._client)
        self._router = Router(
            settings.template,
            prefix=settings.prefix,
            extension=formats.extension(settings.format, settings.compression),
            fmt=settings.format,
            time_field=settings.time_field,
        )
        self._headers = {"Content-Type": formats.content_type(settings.format)}
        encoding = formats.content_encoding(settings.compression)
        if encoding is not None:
            self._headers["Content-Encoding"] = encoding
        self._uploads = asyncio.Semaphore(settings.upload_concurrency)
        self.flush_policy = FlushPolicy(
            max_bytes=settings.object_max_bytes, max_interval_s=settings.flush_interval_s
        )

    async def start(self) -> None:
        await self.check()

    async def check(self) -> None:
        """Proves the bucket, the credentials and the list permission the replay guard needs."""
        await self._client.probe()

    async def write(self, batch: WriteBatch) -> None:
        self._guard.track(batch.batch)
        routed = self._router.route(batch.entries)
        stored: set[int] = set()
        listed = await asyncio.gather(*(self._listed(group) for group in routed.groups))
        objects: list[_Object] = []
        for group, ranges in zip(routed.groups, listed, strict=True):
            objects.extend(self._objects(group, ranges, stored))
        results = await asyncio.gather(
            *(self._upload(obj) for obj in objects), return_exceptions=True
        )
        failures: list[BaseException] = []
        for obj, result in zip(objects, results, strict=True):
            if isinstance(result, BaseException):
                failures.append(result)
            else:
                stored.update(obj.indices)
        if failures:
            raise _with_stored(worst(failures), stored, len(objects) - len(failures))
        if routed.poison:
            first = routed.poison[0]
            first.stored = frozenset(stored)
            raise first
        self._guard.written(batch.batch.next_offsets)

    async def _listed(self, group: Group) -> list[tuple[int, int]]:
        """What the bucket already holds of this group's path; the listings of a write's
        paths run `S3_UPLOAD_CONCURRENCY` at a time (only the first write of a path after
        a start lists)."""
        async with self._uploads:
            return await self._guard.stored(group.tp, group.route)

    def _objects(
        self, group: Group, ranges: list[tuple[int, int]], stored: set[int]
    ) -> list[_Object]:
        """The objects of one path: its units minus those already in the bucket (whose
        entries join `stored`), cut under the cap."""
        keep = [n for n, offset in enumerate(group.offsets) if not covered(offset, ranges)]
        if len(keep) < len(group.offsets):
            kept = set(keep)
            stored.update(i for n, ix in enumerate(group.indices) if n not in kept for i in ix)
            _log.info(
                "%s: %d of %d records are already stored, skipped",
                group.route.before, len(group.offsets) - len(keep), len(group.offsets),
            )  # fmt: skip
        if not keep:
            return []
        units = [group.units[n] for n in keep]
        cap = self._settings.object_max_bytes
        compression = self._settings.compression
        objects = []
        for piece in split(units, cap, lambda raw: formats.pack(raw, compression)):
            held = keep[piece.start : piece.end]
            objects.append(
                _Object(
                    group.tp, group.route, group.offsets[held[0]], group.offsets[held[-1]],
                    len(held), tuple(i for n in held for i in group.indices[n]), piece.body,
                )
            )  # fmt: skip
        return objects

    async def _upload(self, obj: _Object) -> None:
        cap = self._settings.object_max_bytes
        if len(obj.body) > cap:
            _log.warning(
                "%s: one record is %d bytes, more than S3_OBJECT_MAX_BYTES=%d: stored alone",
                obj.key, len(obj.body), cap,
            )  # fmt: skip
        async with self._uploads:
            await self._client.put(obj.key, obj.body, self._headers)
        labels = (self._context.connector_name, "s3", obj.tp[0])
        OBJECTS.labels(*labels).inc()
        OBJECT_BYTES.labels(*labels).inc(len(obj.body))
        _log.info(
            "uploaded s3://%s/%s: %d records, offsets %d-%d, %d bytes",
            self._settings.bucket, obj.key, obj.records, obj.first, obj.last, len(obj.body),
        )  # fmt: skip

    async def close(self) -> None:
        """obstore keeps no connection that needs closing; nothing is buffered here."""


def _with_stored(failure: BaseException, stored: set[int], uploaded: int) -> BaseException:
    """The failure that decides, carrying the entries stored despite it (retriable only:
    a fatal error stops the connector and the replay guard covers the rest)."""
    if isinstance(failure, RetriableError) and stored:
        return RetriableError(
            f"{failure} ({uploaded} other objects of this write were uploaded and are not "
            "sent again)",
            failure.retry_after,
            stored=stored,
        )
    return failure

"""Per-object partial success against a real S3 server: one path refused, the rest kept.

S3Proxy stores objects as files; a plain file put where one path's folder was makes every
upload under that path fail on the server (an error, not a refusal of our request), while
the other paths' uploads succeed. The writer reports those as stored, and the retry, once
the obstacle is gone, sends only the failed path's objects, under the same names.
"""

from __future__ import annotations

import gzip
import json
import random
import uuid
from collections.abc import Iterator

import pytest

from connectors import Batch, Entry, Record, RetriableError, WriteBatch, WriterContext
from harness.s3 import AnswerHold, S3ProxyServer
from writers.s3 import PLUGIN
from writers.s3.settings import S3Settings

pytestmark = pytest.mark.integration

BUCKET = "partial-it"
TEMPLATE = "acct={value.account}/{topic}-{partition}-{first_offset}-{last_offset}"


@pytest.fixture(scope="module")
def s3() -> Iterator[S3ProxyServer]:
    with S3ProxyServer() as server:
        server.create_bucket(BUCKET)
        yield server


@pytest.fixture(autouse=True)
def _aws_credentials(s3: S3ProxyServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)


def write_of(start: int, count: int, accounts: int) -> WriteBatch:
    records = []
    for o in range(start, start + count):
        doc = {"account": f"a{o % accounts}", "n": o, "pad": random.Random(o).randbytes(30).hex()}
        records.append(Record("audit", 0, o, b"k", json.dumps(doc).encode()))
    return WriteBatch(Batch(tuple(records)), tuple(Entry(r, r.key, r.value) for r in records))


async def test_a_refused_path_is_the_only_one_sent_again(s3: S3ProxyServer) -> None:
    prefix = f"partial-{uuid.uuid4().hex[:8]}"
    relay = AnswerHold(s3.port)
    config = S3Settings(
        bucket=BUCKET, prefix=prefix, endpoint_url=relay.endpoint, region=s3.region,
        key_template=TEMPLATE, object_max_bytes=1024,
    )  # type: ignore[call-arg]  # fmt: skip
    writer = PLUGIN.build(config, WriterContext("partial-it"))
    folder = s3.data_dir / BUCKET / prefix / "acct=a2"
    moved = folder.with_name("acct=a2.moved")
    write = write_of(100, 300, accounts=4)
    try:
        await writer.start()
        await writer.write(write_of(0, 100, accounts=4))
        folder.rename(moved)
        folder.write_bytes(b"a file where a folder must be")  # acct=a2/... cannot be created
        relay.requests.clear()
        with pytest.raises(RetriableError) as failed:
            await writer.write(write)
        first_puts = [r for r in relay.requests if r.startswith("PUT ")]
        stored = failed.value.stored
        assert stored == {i for i, e in enumerate(write.entries) if e.source.offset % 4 != 2}
        folder.unlink()
        moved.rename(folder)
        relay.requests.clear()
        rest = tuple(e for i, e in enumerate(write.entries) if i not in stored)
        await writer.write(WriteBatch(write.batch, rest))
        retry_puts = [r for r in relay.requests if r.startswith("PUT ")]
    finally:
        relay.close()
    refused = [r for r in first_puts if "/acct%3Da2/" in r]
    assert len(refused) > 1, "the cap cuts a path's share into several objects"
    assert sorted(retry_puts) == sorted(refused), "only the refused objects, same names"
    files = s3.files(BUCKET, prefix)
    numbers = sorted(json.loads(line)["n"] for body in files.values()
                     for line in gzip.decompress(body).splitlines())  # fmt: skip
    assert numbers == list(range(400))
    print(
        f"\npartial: first attempt {len(first_puts)} PUTs ({len(refused)} refused), "
        f"retry {len(retry_puts)} PUTs, {len(files)} objects"
    )

"""Object names, encodings and S3 settings of the S3/R2 writer: pure logic, no server."""

from __future__ import annotations

import gzip
import json

import pytest

from connectors import Entry, PoisonError, Record
from connectors.config.settings import load
from connectors.core.errors import Problem
from transforms.proto.edge import EdgeZoneConfig
from writers.s3 import formats
from writers.s3.naming import Folder, day_of, offsets_of
from writers.s3.settings import S3Settings
from writers.s3.upload import as_ours, endpoint_for


def entry(offset: int, key: bytes | None, value: bytes | None, message: object = None) -> Entry:
    return Entry(Record("t", 0, offset, key, value), key, value, message)


def test_keys_sort_in_offset_order_and_parse_back() -> None:
    folder = Folder("logs/audit", "audit.v1", 7)
    early = folder.key(9, 99, "ndjson.gz")
    late = folder.key(100, 120, "ndjson.gz")
    assert early == "logs/audit/audit.v1/7/00000000000000000009-00000000000000000099.ndjson.gz"
    assert early < late
    assert offsets_of(late) == (100, 120)
    assert offsets_of("logs/audit/audit.v1/7/notes.txt") is None
    assert folder.start_after(100) < late
    assert folder.start_after(101) > late


def test_date_folder_and_empty_prefix() -> None:
    folder = Folder("", "t", 0, day_of(1_717_200_000_000))
    assert folder.path == "t/dt=2024-06-01/0"
    assert day_of(-1) == "1970-01-01"


def test_ndjson_documents() -> None:
    config = EdgeZoneConfig(zone_id="z", version=2)
    body = formats.render(
        [
            entry(0, b"z", config.SerializeToString(), config),
            entry(1, b"k", b'{"a": [1, 2]}'),
            entry(2, b"k", b"\xff not json"),
            entry(3, b"gone", None),
        ],
        "ndjson",
        "none",
    )
    assert [json.loads(line) for line in body.splitlines()] == [
        {"zone_id": "z", "version": "2"},
        {"a": [1, 2]},
        {"key_b64": "aw==", "value_b64": "/yBub3QganNvbg=="},
        {"key_b64": "Z29uZQ==", "value_b64": None},
    ]


def test_gzip_is_deterministic_so_replays_give_identical_objects() -> None:
    entries = [entry(n, b"k", b"value %d" % n) for n in range(50)]
    first = formats.render(entries, "ndjson", "gzip")
    assert first == formats.render(entries, "ndjson", "gzip")
    assert gzip.decompress(first).count(b"\n") == 50


def test_length_delimited_round_trip_and_deletes_refused() -> None:
    values = [b"", b"x" * 300, bytes(range(256))]
    body = formats.render([entry(n, None, v) for n, v in enumerate(values)], "protobuf", "none")
    assert list(formats.delimited_values(body)) == values
    with pytest.raises(ValueError, match="truncated"):
        list(formats.delimited_values(body[:-1]))
    tombstone = entry(9, b"k", None)
    with pytest.raises(PoisonError) as refused:
        formats.render([tombstone], "protobuf", "gzip")
    assert refused.value.record is tombstone.source


def test_extensions_and_content_types() -> None:
    assert formats.extension("ndjson", "gzip") == "ndjson.gz"
    assert formats.extension("protobuf", "none") == "protodelim"
    assert formats.content_type("ndjson") == "application/x-ndjson"
    assert formats.content_type("protobuf") == "application/x-protobuf"
    assert formats.content_encoding("gzip") == "gzip"
    assert formats.content_encoding("none") is None


def settings(**env: str) -> S3Settings:
    problems: list[Problem] = []
    loaded = load(S3Settings, {"S3_BUCKET": "logs", **env}, problems)
    assert loaded is not None, problems
    return loaded


def test_addressing_style_auto() -> None:
    assert settings().virtual_hosted
    r2 = settings(S3_ENDPOINT_URL="https://acct.r2.cloudflarestorage.com/", S3_REGION="auto")
    assert not r2.virtual_hosted and r2.endpoint_url == "https://acct.r2.cloudflarestorage.com"
    assert endpoint_for(r2) == "https://acct.r2.cloudflarestorage.com"
    virtual = settings(S3_ENDPOINT_URL="https://minio.local:9000", S3_ADDRESSING_STYLE="VIRTUAL")
    assert endpoint_for(virtual) == "https://logs.minio.local:9000"


def test_bad_settings_are_reported_per_variable() -> None:
    problems: list[Problem] = []
    env = {
        "S3_BUCKET": "Not_A_Bucket",
        "S3_ENDPOINT_URL": "ftp://x",
        "S3_FORMAT": "csv",
        "S3_PART_BYTES": "1000",
    }
    assert load(S3Settings, env, problems) is None
    assert sorted(p.variable for p in problems) == [
        "S3_BUCKET",
        "S3_ENDPOINT_URL",
        "S3_FORMAT",
        "S3_PART_BYTES",
    ]


def test_describe_names_every_variable() -> None:
    shown = settings(S3_PREFIX="/audit/").describe()
    assert shown.splitlines()[:3] == [
        "S3_BUCKET=logs",
        "S3_PREFIX=audit",
        "S3_ENDPOINT_URL=unset -> AWS",
    ]
    for name in S3Settings.model_fields:
        assert f"S3_{name.upper()}=" in shown


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("Server returned non-2xx status code: 503 Service Unavailable: SlowDown", "Retriable"),
        ("Server returned non-2xx status code: 400 Bad Request: InvalidArgument", "Fatal"),
        ("Server returned non-2xx status code: 429 Too Many Requests", "Retriable"),
        ("HTTP error: error sending request", "Retriable"),
    ],
)
def test_error_classes(text: str, kind: str) -> None:
    from obstore.exceptions import GenericError

    assert type(as_ours(GenericError(text), "s3://b/k")).__name__ == f"{kind}Error"

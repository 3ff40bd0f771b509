"""The HTTP writer's pure logic: header parsing, masking, documents, Retry-After."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from connectors import Entry, Record
from connectors.config.settings import load
from connectors.core.errors import Problem
from writers.http.sender import body, plan, retry_after
from writers.http.settings import HTTPSettings, mask_query, parse_headers


def test_header_forms() -> None:
    assert parse_headers("Authorization: Bearer a:b; X-Team: comms;") == [
        ("Authorization", "Bearer a:b"),
        ("X-Team", "comms"),
    ]
    assert parse_headers('{"X-A": "1;2"}') == [("X-A", "1;2")]
    assert parse_headers("  ") == []
    for bad in ("Authorization Bearer x", '{"X": 1}', "Bad Name: v", "[1]"):
        with pytest.raises(ValueError) as refused:
            parse_headers(bad)
        assert "Bearer x" not in str(refused.value)


def test_a_bad_header_value_is_never_echoed() -> None:
    problems: list[Problem] = []
    env = {"HTTP_URL": "https://x.example", "HTTP_HEADERS": "Authorization Bearer hunter2"}
    assert load(HTTPSettings, env, problems) is None
    (problem,) = problems
    assert problem.variable == "HTTP_HEADERS" and problem.value is None
    assert "hunter2" not in str(problem)


def test_query_values_are_masked() -> None:
    assert mask_query("https://u:pw@h.example/p?token=abc&x=1") == (
        "https://u:*****@h.example/p?token=*****&x=*****"
    )
    assert mask_query("https://h.example/p") == "https://h.example/p"


def test_fatal_statuses_must_be_4xx() -> None:
    problems: list[Problem] = []
    env = {"HTTP_URL": "https://x.example", "HTTP_FATAL_STATUSES": "401,500"}
    assert load(HTTPSettings, env, problems) is None
    assert problems[0].variable == "HTTP_FATAL_STATUSES"
    ok = load(HTTPSettings, {**env, "HTTP_FATAL_STATUSES": "401, 404"}, [])
    assert ok is not None and ok.fatal_statuses == (401, 404)


def test_bodies() -> None:
    entries = [
        Entry(Record("t", 0, n, b"k", b""), b"k", v) for n, v in enumerate([b'{"a":1}', b"raw"])
    ]
    assert body(entries, "json", True) == b'[{"a":1},{"key_b64":"aw==","value_b64":"cmF3"}]'
    assert body(entries, "ndjson", True) == (b'{"a":1}\n{"key_b64":"aw==","value_b64":"cmF3"}\n')
    assert body(entries[:1], "json", False) == b'{"a":1}'


def test_retry_after_forms() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert retry_after("12") == 12.0
    assert retry_after(later, now=now.timestamp()) == 30.0
    assert retry_after("soon") is None
    assert retry_after(None) is None


def test_requests_are_planned_by_record_and_cut_where_an_earlier_attempt_split() -> None:
    def outputs(offset: int, count: int) -> list[Entry]:
        record = Record("t", 0, offset, b"k", b"v")
        return [Entry(record, b"k", b"%d" % n) for n in range(count)]

    entries = [e for offset in range(10) for e in outputs(offset, 2 if offset == 3 else 1)]

    def offsets(requests: list[list[Entry]]) -> list[list[int]]:
        return [[e.source.offset for e in request] for request in requests]

    # Aligned buckets of 4 offsets, at most 4 entries a request; the two outputs of offset
    # 3 travel together.
    assert offsets(plan(entries, 4, set())) == [[0, 1, 2], [3, 3], [4, 5, 6, 7], [8, 9]]
    # A record with more outputs than the cap goes alone.
    assert offsets(plan(outputs(0, 5), 4, set())) == [[0] * 5]
    # Cuts left by a split start new requests; the cap counts again from each.
    assert offsets(plan(entries, 4, {2, 5})) == [[0, 1], [2, 3, 3], [4], [5, 6, 7], [8, 9]]
    # A replay whose poll ended elsewhere cuts the same requests: buckets, not batches.
    assert offsets(plan(entries[5:], 4, set())) == [[4, 5, 6, 7], [8, 9]]

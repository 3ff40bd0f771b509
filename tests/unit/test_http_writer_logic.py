"""The HTTP writer's pure logic: header parsing, masking, documents, Retry-After."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from connectors import Entry, Record
from connectors.config.settings import load
from connectors.core.errors import Problem
from writers.http.sender import body, retry_after
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

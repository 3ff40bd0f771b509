"""S3_KEY_TEMPLATE: parsing, escaping (no value ever leaves its segment) and event time."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.config.settings import load
from connectors.core.errors import Problem
from writers.s3.eventtime import event_time, parse_time, record_time
from writers.s3.settings import S3Settings
from writers.s3.template import DEFAULT, KeyTemplate, MissingField, escape

ROUTED = (
    "logs/account={value.account_id}/{year}-{month}-{day}/"
    "{topic}-{partition}-{first_offset}-{last_offset}"
)
SAFE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~%")
FIELDS = {"topic": "audit.v1", "partition": "3", "year": "2026", "month": "11", "day": "30"}
FIELDS["hour"] = "23"


def test_a_routed_key() -> None:
    route = KeyTemplate(ROUTED).route("p", "ndjson.gz", FIELDS, {"account_id": "42"})
    assert route.key(7, 9) == (
        "p/logs/account=42/2026-11-30/audit.v1-3-00000000000000000007-00000000000000000009.ndjson.gz"
    )
    assert route.folder == "p/logs/account=42/2026-11-30"
    assert route.offsets(route.key(12, 30)) == (12, 30)
    other = KeyTemplate(ROUTED).route("p", "ndjson.gz", FIELDS, {"account_id": "43"})
    assert route.offsets(other.key(12, 30)) is None


def test_the_default_template_is_the_old_layout() -> None:
    route = KeyTemplate(DEFAULT).route("logs/audit", "ndjson.gz", FIELDS, None)
    assert route.key(0, 4) == (
        "logs/audit/audit.v1/3/00000000000000000000-00000000000000000004.ndjson.gz"
    )
    assert route.start_after(5) == "logs/audit/audit.v1/3/00000000000000000005"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{topic}/{partition}/{first_offset}-{last_offset", "unbalanced"),
        ("{topic}/{partition}/{first_offset}-last_offset}", "unbalanced"),
        ("{topic}/{partition}/{first_offset}-{last_offset}/{colour}", "unknown placeholder"),
        ("{topic}/{partition}/{first_offset}-{last_offset}/{value}", "unknown placeholder"),
        ("{topic}/{partition}/{first_offset}-{last_offset}/{value.a[0]}", "unknown placeholder"),
        ("{topic}/{partition}/{first_offset:05}-{last_offset}", "no format"),
        ("{topic}/{first_offset}-{last_offset}", "{partition} is missing"),
        ("{topic}/{partition}/{last_offset}-{first_offset}", "must come before"),
        ("/{topic}/{partition}/{first_offset}-{last_offset}", "empty"),
        ("{topic}//{partition}/{first_offset}-{last_offset}", "empty"),
        ("{topic}/../{partition}/{first_offset}-{last_offset}", "'..'"),
    ],
)
def test_bad_templates_are_config_errors(text: str, says: str) -> None:
    problems: list[Problem] = []
    assert load(S3Settings, {"S3_BUCKET": "logs", "S3_KEY_TEMPLATE": text}, problems) is None
    assert [p.variable for p in problems] == ["S3_KEY_TEMPLATE"]
    assert says in problems[0].expected


def test_template_and_partition_by_date_exclude_each_other() -> None:
    problems: list[Problem] = []
    env = {"S3_BUCKET": "logs", "S3_PARTITION_BY": "date", "S3_KEY_TEMPLATE": ROUTED}
    assert load(S3Settings, env, problems) is None
    assert [p.variable for p in problems] == ["S3_KEY_TEMPLATE"]


def test_literal_braces() -> None:
    template = KeyTemplate("{{x}}/{topic}/{partition}/{first_offset}-{last_offset}")
    assert template.route("", "ndjson", FIELDS, None).before == "{x}/audit.v1/3/"


@pytest.mark.parametrize(
    ("document", "says"),
    [
        ({}, "no field"),
        ({"account_id": None}, "no field"),
        ({"account_id": ""}, "empty"),
        ({"account_id": {"id": 1}}, "not a scalar"),
        ({"account_id": [1]}, "not a scalar"),
        ({"account_id": "x" * 1100}, "longer than 1024"),
    ],
)
def test_a_record_without_a_usable_value_cannot_be_routed(document: object, says: str) -> None:
    with pytest.raises(MissingField, match=says):
        KeyTemplate(ROUTED).route("p", "ndjson", FIELDS, document)


def test_scalars_render_as_json_writes_them() -> None:
    template = KeyTemplate("{value.a}/{value.b.c}/{topic}-{partition}-{first_offset}-{last_offset}")
    doc = {"a": True, "b": {"c": 1.5}}
    assert template.route("", "ndjson", FIELDS, doc).before == "true/1.5/audit.v1-3-"


# At most 60 characters: escaped (up to 12 bytes a character) the key stays under S3's 1,024
# bytes; a longer key is refused as a whole (the "longer than 1024" case above).
values = st.one_of(
    st.text(min_size=1, max_size=60),
    st.sampled_from([".", "..", "...", "/", "../..", "%2F", "a/../b", "%", " ", "\x00", "é/"]),
    st.integers(),
)


@given(values)
def test_no_value_escapes_its_segment(value: object) -> None:
    template = KeyTemplate("a/{value.v}/{topic}-{partition}-{first_offset}-{last_offset}")
    key = template.route("pre", "ndjson", FIELDS, {"v": value}).key(1, 2)
    segments = key.split("/")
    assert len(segments) == 4
    assert segments[:2] == ["pre", "a"]
    assert segments[2] not in ("", ".", "..")
    assert unquote(segments[2]) == str(value)
    assert set(segments[2]) <= SAFE


@given(st.text(min_size=1), st.text(min_size=1))
def test_two_values_in_one_segment_never_make_a_dot_segment(a: str, b: str) -> None:
    segment = escape(a) + escape(b)
    assert segment not in (".", "..") and "/" not in segment


# ------------------------------------------------------------------------------ event time

NOV30 = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-30T23:30:00Z",
        "2026-12-01T00:30:00+01:00",
        "2026-11-30T23:30:00.000000Z",
        int(NOV30.timestamp()),
        int(NOV30.timestamp()) * 1000,
        str(int(NOV30.timestamp()) * 1000),
        float(NOV30.timestamp()),
        {"seconds": str(int(NOV30.timestamp())), "nanos": 0},
    ],
)
def test_event_time_forms(value: object) -> None:
    assert parse_time(value) == NOV30


@pytest.mark.parametrize(
    "value", ["2026-11-30T23:30:00", "2026-11-30", "yesterday", True, None, [1], "1e999", 1e300]
)
def test_unparseable_event_times_are_poison(value: object) -> None:
    with pytest.raises(MissingField):
        parse_time(value)


def test_event_time_field_path_and_record_time() -> None:
    assert event_time({"meta": {"at": "2026-11-30T23:30:00Z"}}, "meta.at") == NOV30
    with pytest.raises(MissingField, match="no field 'meta.at'"):
        event_time({"meta": {}}, "meta.at")
    assert record_time(0) == record_time(-5) == datetime(1970, 1, 1, tzinfo=UTC)
    assert record_time(int(NOV30.timestamp() * 1000)) == NOV30


@pytest.mark.parametrize("field", ["occurred_at", "meta.at"])
def test_time_field_setting(field: str) -> None:
    problems: list[Problem] = []
    loaded = load(S3Settings, {"S3_BUCKET": "logs", "S3_TIME_FIELD": field}, problems)
    assert loaded is not None and loaded.time_field == field
    assert load(S3Settings, {"S3_BUCKET": "logs", "S3_TIME_FIELD": "a..b"}, problems) is None

"""HTTP_URL templates: what they accept, how they escape, what they refuse."""

from __future__ import annotations

import json

import pytest

from connectors import Entry, PoisonError, Record
from connectors.config.settings import load
from connectors.core.errors import Problem
from writers.http.documents import route
from writers.http.routing import Unroutable, parse
from writers.http.settings import HTTPSettings


def entry(value: object, key: bytes | None = b"k 1/2") -> Entry:
    raw = None if value is None else json.dumps(value).encode()
    return Entry(Record("prefs", 2, 41, key, raw, (), 7), key, raw)


def test_placeholders_are_filled_and_escaped_as_one_segment() -> None:
    template = parse("https://crm/c/{value.user.id}/{key}?t={topic}&p={partition}&o={offset}")
    doc = {"user": {"id": "a/b?c"}}
    url = template.render(entry(doc), doc)
    assert url == "https://crm/c/a%2Fb%3Fc/k%201%2F2?t=prefs&p=2&o=41"
    assert template.value_fields == (("user", "id"),)


@pytest.mark.parametrize(
    "text",
    [
        "https://x/{nope}",
        "https://x/{value}",
        "https://x/{key",
        "https://x/}",
        "https://x/{value.}",
    ],
)
def test_bad_templates_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse(text)


def test_bad_template_is_a_config_problem_naming_http_url() -> None:
    problems: list[Problem] = []
    assert load(HTTPSettings, {"HTTP_URL": "https://crm/c/{value.id"}, problems) is None
    assert [p.variable for p in problems] == ["HTTP_URL"]


def test_an_output_without_the_field_is_poison_at_write() -> None:
    settings = HTTPSettings(url="https://crm/c/{value.user_id}")
    with pytest.raises(PoisonError) as poison:
        route(0, entry({"other": 1}), settings.template, settings)
    assert poison.value.stage == "write"
    with pytest.raises(Unroutable):
        settings.template.render(entry({"user_id": {"nested": 1}}), {"user_id": {"nested": 1}})


def test_deletions_and_the_envelope() -> None:
    settings = HTTPSettings(
        url="https://crm/c/{key}", method="PUT", delete_method="DELETE", envelope=True
    )
    gone = route(0, entry(None, b"u1"), settings.template, settings)
    assert (gone.method, gone.url, gone.bodiless) == ("DELETE", "https://crm/c/u1", True)
    kept = route(1, entry({"a": 1}, b"u1"), settings.template, settings)
    assert kept.method == "PUT" and not kept.bodiless
    assert kept.document == {
        "key": "u1", "topic": "prefs", "partition": 2, "offset": 41, "timestamp_ms": 7,
        "value": {"a": 1},
    }  # fmt: skip


def test_max_concurrency_falls_back_to_max_in_flight() -> None:
    assert HTTPSettings(url="https://x/", max_in_flight=3).concurrency == 3
    assert HTTPSettings(url="https://x/", max_in_flight=3, max_concurrency=9).concurrency == 9

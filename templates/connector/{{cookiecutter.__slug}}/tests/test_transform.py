{%- set stores_view = cookiecutter.writer in ("kv", "kafka") -%}
"""The transform's behaviour, one rule per test, on messages built from the real schema."""

from __future__ import annotations

import logging
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from connectors import {% if stores_view %}Delete, {% endif %}Put, TransformContext
{%- if not stores_view %}
from google.protobuf.timestamp_pb2 import Timestamp
{%- endif %}

from {{ cookiecutter.__package }}.schema import {{ cookiecutter.__message }}{% if stores_view %}, {{ cookiecutter.__view }}{% endif %}
from {{ cookiecutter.__package }}.transform import {{ cookiecutter.transform_name }}

TOPIC = "{{ cookiecutter.__first_topic }}"
ROOT = Path(__file__).resolve().parent.parent


def context(offset: int = 0) -> TransformContext:
    return TransformContext(
        topic=TOPIC,
        partition=0,
        offset=offset,
        key=b"k",
        headers=(),
        timestamp_ms=0,
        logger=logging.getLogger("test"),
    )


def test_an_event_becomes_a_normalised_{% if stores_view %}view{% else %}document{% endif %}_under_its_id() -> None:
    event = {{ cookiecutter.__message }}(
        id=" 42 ",
        name=" Example ",
        attributes={" Colour ": " blue ", "empty": " ", " ": "no key"},
        tags=["b", "A", "a", " "],
        version=7,
        updated_at_ms=1_700_000_000_000,
{%- if not stores_view %}
        occurred_at=Timestamp(seconds=1_700_000_000),
{%- endif %}
    )

    out = {{ cookiecutter.transform_name }}(event, context())

    assert isinstance(out, Put)
    assert out.key == "{{ cookiecutter.__key_prefix }}:42"
{%- if stores_view %}
    assert out.value == {{ cookiecutter.__view }}(
        id="42",
        name="Example",
        attributes={"colour": "blue"},
        tags=["a", "b"],
        version=7,
        updated_at_ms=1_700_000_000_000,
    )
{%- else %}
    assert out.value == {
        "id": "42",
        "name": "Example",
        "attributes": {"colour": "blue"},
        "tags": ["a", "b"],
        "version": 7,
        "updated_at_ms": 1_700_000_000_000,
        "deleted": False,
        "occurred_at": "2023-11-14T22:13:20Z",
    }
{%- endif %}


def test_equal_inputs_give_equal_{% if stores_view %}bytes{% else %}documents{% endif %}() -> None:
    first = {{ cookiecutter.__message }}(id="1", attributes={"a": "1", "b": "2"}, tags=["x", "y"])
    second = {{ cookiecutter.__message }}(id="1", attributes={"b": "2", "a": "1"}, tags=["y", "x", "y"])

    a = {{ cookiecutter.transform_name }}(first, context())
    b = {{ cookiecutter.transform_name }}(second, context())

    assert isinstance(a, Put) and isinstance(b, Put)
{%- if stores_view %}
    assert a.value.SerializeToString(deterministic=True) == b.value.SerializeToString(
        deterministic=True
    )
{%- else %}
    assert a.value == b.value
{%- endif %}


{%- if stores_view %}


def test_a_deleted_entity_deletes_its_entry() -> None:
    out = {{ cookiecutter.transform_name }}({{ cookiecutter.__message }}(id="42", deleted=True), context())

    assert out == Delete("{{ cookiecutter.__key_prefix }}:42")
{%- else %}


def test_a_deleted_entity_is_sent_as_deleted() -> None:
    out = {{ cookiecutter.transform_name }}({{ cookiecutter.__message }}(id="42", deleted=True), context())

    assert isinstance(out, Put) and out.value["deleted"] is True
    assert "occurred_at" not in out.value, "an unset timestamp is left out, not the epoch"
{%- endif %}


def test_an_event_without_id_is_dropped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="test"):
        out = {{ cookiecutter.transform_name }}({{ cookiecutter.__message }}(name="no id"), context(offset=9))

    assert out is None
    assert "@9" in caplog.text


def test_the_input_is_not_mutated() -> None:
    event = {{ cookiecutter.__message }}(id=" 1 ", attributes={" A ": " x "}, tags=["B", "a"])
    before = event.SerializeToString(deterministic=True)

    {{ cookiecutter.transform_name }}(event, context())

    assert event.SerializeToString(deterministic=True) == before


def test_the_runtime_finds_the_transform_by_its_entry_point() -> None:
    """Declared in pyproject.toml (what an install registers), pointing at this module."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    assert declared["connectors.transforms"]["{{ cookiecutter.transform_name }}"] == "{{ cookiecutter.__package }}.transform"
    installed = {ep.name: ep.value for ep in entry_points(group="connectors.transforms")}
    if "{{ cookiecutter.transform_name }}" in installed:  # after `make install`, as the runtime sees it
        assert installed["{{ cookiecutter.transform_name }}"] == "{{ cookiecutter.__package }}.transform"

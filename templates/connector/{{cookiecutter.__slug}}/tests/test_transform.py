"""The transform's behaviour, one rule per test, on messages built from the real schema."""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

import pytest
from connectors import Delete, Put, TransformContext

from {{ cookiecutter.__package }}.schema import {{ cookiecutter.__message }}, {{ cookiecutter.__view }}
from {{ cookiecutter.__package }}.transform import {{ cookiecutter.transform_name }}

TOPIC = "{{ cookiecutter.__first_topic }}"


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


def test_an_event_becomes_a_normalised_view_under_its_id() -> None:
    event = {{ cookiecutter.__message }}(
        id=" 42 ",
        name=" Example ",
        attributes={" Colour ": " blue ", "empty": " ", " ": "no key"},
        tags=["b", "A", "a", " "],
        version=7,
        updated_at_ms=1_700_000_000_000,
    )

    out = {{ cookiecutter.transform_name }}(event, context())

    assert isinstance(out, Put)
    assert out.key == "{{ cookiecutter.__key_prefix }}:42"
    assert out.value == {{ cookiecutter.__view }}(
        id="42",
        name="Example",
        attributes={"colour": "blue"},
        tags=["a", "b"],
        version=7,
        updated_at_ms=1_700_000_000_000,
    )


def test_equal_inputs_give_equal_bytes() -> None:
    first = {{ cookiecutter.__message }}(id="1", attributes={"a": "1", "b": "2"}, tags=["x", "y"])
    second = {{ cookiecutter.__message }}(id="1", attributes={"b": "2", "a": "1"}, tags=["y", "x", "y"])

    a = {{ cookiecutter.transform_name }}(first, context())
    b = {{ cookiecutter.transform_name }}(second, context())

    assert isinstance(a, Put) and isinstance(b, Put)
    assert a.value.SerializeToString(deterministic=True) == b.value.SerializeToString(
        deterministic=True
    )


def test_a_deleted_entity_deletes_its_entry() -> None:
    out = {{ cookiecutter.transform_name }}({{ cookiecutter.__message }}(id="42", deleted=True), context())

    assert out == Delete("{{ cookiecutter.__key_prefix }}:42")


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
    found = {ep.name: ep.value for ep in entry_points(group="connectors.transforms")}

    assert found.get("{{ cookiecutter.transform_name }}") == "{{ cookiecutter.__package }}.transform"

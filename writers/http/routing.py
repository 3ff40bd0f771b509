"""Where each entry goes: `HTTP_URL` as a template, and the method it is sent with.

A template holds placeholders in braces: `{key}` (the output's key), `{topic}`,
`{partition}`, `{offset}` (the record it came from) and `{value.<field>}` (a field of the
output document, `{value.a.b}` for a nested one). Every substitution is URL-escaped as one
path segment or query value (`/` included), so a value can never change the URL's shape.
Anything else in braces, or a brace without its pair, is refused when the settings are
read: a typo must stop `connector check`, not dead-letter every record.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from connectors import Entry

RECORD_FIELDS = ("key", "topic", "partition", "offset")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_FIELD = re.compile(r"^value(\.[A-Za-z_][A-Za-z0-9_]*)+$")


class Unroutable(ValueError):
    """An entry the template cannot place: its output lacks a field the URL names."""


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed `HTTP_URL`: literal text and placeholders, alternating (`parts[0]`,
    `parts[2]`, ... are literal)."""

    text: str
    parts: tuple[str, ...]

    @property
    def fixed(self) -> bool:
        """True when every entry goes to the same URL (no placeholder)."""
        return len(self.parts) == 1

    @property
    def value_fields(self) -> tuple[tuple[str, ...], ...]:
        """The output fields the template reads, as paths (`("a", "b")` for `value.a.b`)."""
        return tuple(
            tuple(name.split(".")[1:]) for name in self.parts[1::2] if name.startswith("value.")
        )

    def sample(self) -> str:
        """The URL with every placeholder replaced by `x`, for checking its shape."""
        return "".join(part if n % 2 == 0 else "x" for n, part in enumerate(self.parts))

    def render(self, entry: Entry, document: Any) -> str:
        """The URL of `entry`, whose output renders as `document`; Unroutable when a
        placeholder has nothing to put in its place."""
        if self.fixed:
            return self.text
        out = []
        for n, part in enumerate(self.parts):
            out.append(part if n % 2 == 0 else _escaped(_lookup(part, entry, document)))
        return "".join(out)


def parse(text: str) -> Template:
    """The template `text`; ValueError naming the first problem (an unknown placeholder,
    a brace without its pair)."""
    parts: list[str] = []
    position = 0
    for match in _PLACEHOLDER.finditer(text):
        literal = text[position : match.start()]
        _balanced(literal)
        name = match.group(1).strip()
        if name not in RECORD_FIELDS and not _FIELD.match(name):
            raise ValueError(
                f"unknown placeholder {{{match.group(1)}}}; known: {{key}}, {{topic}}, "
                "{partition}, {offset}, {value.<field>}"
            )
        parts += [literal, name]
        position = match.end()
    tail = text[position:]
    _balanced(tail)
    parts.append(tail)
    return Template(text, tuple(parts))


def _balanced(literal: str) -> None:
    if "{" in literal or "}" in literal:
        raise ValueError("a brace without its pair; placeholders are written {name}")


def _lookup(name: str, entry: Entry, document: Any) -> bytes | str:
    source = entry.source
    if name == "key":
        if entry.key is None:
            raise Unroutable("the output has no key for {key} in HTTP_URL")
        return entry.key
    if name == "topic":
        return source.topic
    if name == "partition":
        return str(source.partition)
    if name == "offset":
        return str(source.offset)
    found: Any = document if entry.value is not None else None
    for step in name.split(".")[1:]:
        if not isinstance(found, Mapping) or step not in found:
            raise Unroutable(f"the output has no field {name} for HTTP_URL")
        found = found[step]
    if found is None or isinstance(found, Mapping | list):
        raise Unroutable(f"the output's {name} is not a text or a number, as HTTP_URL needs")
    if isinstance(found, bool):
        return "true" if found else "false"
    return str(found)


def _escaped(value: bytes | str) -> str:
    return quote(value, safe="")

"""Name → plugin lookups, filled from entry points so built-ins and third parties are equal.

The core never imports a plugin module by name: `WRITER=s3` is a lookup in the
`connectors.writers` entry-point group, and `pyproject.toml` declares the built-ins there
like any other package would.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar

from connectors.core.reader import ReaderPlugin
from connectors.core.writer import WriterPlugin

T = TypeVar("T")


class UnknownName(LookupError):  # noqa: N818 - reads as "unknown name" at the call site
    """A name no plugin answers to; carries the names that exist for the error message."""

    def __init__(self, kind: str, name: str, available: list[str]) -> None:
        self.kind = kind
        self.name = name
        self.available = available
        super().__init__(f"unknown {kind} {name!r}; available: {', '.join(available) or 'none'}")


class Registry(Generic[T]):
    """Plugins of one kind. Entry points are loaded lazily, on first lookup of their name."""

    def __init__(
        self,
        kind: str,
        group: str | None = None,
        check: Callable[[object], T] | None = None,
    ) -> None:
        self.kind = kind
        self._group = group
        self._check = check
        self._items: dict[str, T] = {}
        self._entry_points: dict[str, EntryPoint] | None = None

    def register(self, name: str, item: T) -> T:
        self._items[name] = item
        return item

    def _discovered(self) -> dict[str, EntryPoint]:
        if self._entry_points is None:
            found = entry_points(group=self._group) if self._group else ()
            self._entry_points = {ep.name: ep for ep in found}
        return self._entry_points

    def names(self) -> list[str]:
        return sorted(set(self._items) | set(self._discovered()))

    def get(self, name: str) -> T:
        if name in self._items:
            return self._items[name]
        entry_point = self._discovered().get(name)
        if entry_point is None:
            raise UnknownName(self.kind, name, self.names())
        loaded = entry_point.load()
        if name in self._items:  # loading a module registered it through a decorator
            return self._items[name]
        if self._check is None:
            raise UnknownName(self.kind, name, self.names())
        return self.register(name, self._check(loaded))


def _reader(item: object) -> ReaderPlugin:
    if not isinstance(item, ReaderPlugin):
        raise TypeError(f"entry point gave {type(item).__name__}, expected ReaderPlugin")
    return item


def _writer(item: object) -> WriterPlugin:
    if not isinstance(item, WriterPlugin):
        raise TypeError(f"entry point gave {type(item).__name__}, expected WriterPlugin")
    return item


READERS: Registry[ReaderPlugin] = Registry("reader", "connectors.readers", _reader)
WRITERS: Registry[WriterPlugin] = Registry("writer", "connectors.writers", _writer)

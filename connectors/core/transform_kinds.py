"""What kind of transform a registered callable is, and whether its signature fits it.

Three kinds, told apart once when the chain is built, never per record:

- `sync`: `def fn(message, ctx)`, called inline (the fast path: no event-loop hop);
- `async`: `async def fn(message, ctx)` (or an object whose `__call__` is `async def`),
  awaited concurrently across the records of a batch, `TRANSFORM_CONCURRENCY` at most;
- `batch`: registered with `@transform("name", batch=True)`,
  `fn(messages: list, contexts: list[TransformContext]) -> list`, sync or async, called once
  per partition's share of a batch.

`misfit` is what `connector check` (and `run`, before connecting) says about a callable
that cannot be called the way its registration promises, so that a wrong signature is a
configuration error naming the transform rather than every record dead-lettered.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["sync", "async", "batch"]

__all__ = ["BatchTransform", "Kind", "is_async", "kind_of", "misfit"]


@dataclass(frozen=True, slots=True)
class BatchTransform:
    """A batch transform as the registry holds it: the function, and whether it is async.

    `fn(messages, contexts)` returns one output per message, in order: what a per-record
    transform would return for it (None, a value, Put, Delete, an iterable for fan-out), or
    an Exception instance for a record that failed alone (a RetriableError instance asks for
    that record, and those after it, to be tried again)."""

    fn: Callable[..., Any]

    @property
    def is_async(self) -> bool:
        return is_async(self.fn)

    def __call__(self, message: Any, ctx: Any, /) -> Any:
        raise TypeError("a batch transform is called with lists of messages and contexts")


def is_async(fn: object) -> bool:
    """Whether calling `fn` gives a coroutine: an `async def` function (also behind
    functools.partial) or an object whose `__call__` is one."""
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(type(fn), "__call__", None)  # noqa: B004 - the method, not callable()
    return call is not None and not inspect.isfunction(fn) and inspect.iscoroutinefunction(call)


def kind_of(fn: object) -> Kind:
    """`batch`, `async` or `sync`."""
    if isinstance(fn, BatchTransform):
        return "batch"
    return "async" if is_async(fn) else "sync"


def misfit(fn: object) -> str | None:
    """Why `fn` cannot be called as its registration says (None when it can): not
    callable, or a signature that does not take exactly the two positional arguments
    (message and context, or messages and contexts) the runner passes."""
    target = fn.fn if isinstance(fn, BatchTransform) else fn
    batch = isinstance(fn, BatchTransform)
    shape = "fn(messages, contexts)" if batch else "fn(message, ctx)"
    if not callable(target):
        return f"a callable {shape}, not {type(target).__name__}"
    if inspect.isasyncgenfunction(target) or (inspect.isgeneratorfunction(target) and batch):
        return f"a function returning its outputs ({shape} -> list), not a generator"
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):  # a builtin without a signature: trust the registration
        return None
    try:
        signature.bind(None, None)
    except TypeError as exc:
        kind = "batch" if batch else kind_of(fn)
        return f"a {kind} transform callable as {shape}; its signature {signature} is not ({exc})"
    return None

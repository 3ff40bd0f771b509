"""`identity`: the message goes on unchanged under the record's key."""

from __future__ import annotations

from typing import Any

from connectors import TransformContext, transform


@transform("identity")
def identity(message: Any, ctx: TransformContext) -> Any:
    return message

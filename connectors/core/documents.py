"""An entry as a JSON document: what the HTTP and S3 writers send, one rule for both."""

from __future__ import annotations

import base64
import json
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from connectors.core.records import Entry


def document(entry: Entry) -> Any:
    """A protobuf by its JSON mapping (field names as in the .proto), a JSON value as is,
    other bytes and deletions as `{"key_b64", "value_b64"}`, so nothing is ever dropped."""
    if isinstance(entry.message, Message):
        return MessageToDict(entry.message, preserving_proto_field_name=True)
    if entry.value is not None:
        try:
            return json.loads(entry.value)
        except ValueError:
            pass
    return {
        "key_b64": None if entry.key is None else base64.b64encode(entry.key).decode(),
        "value_b64": None if entry.value is None else base64.b64encode(entry.value).decode(),
    }

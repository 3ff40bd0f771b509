"""`connector kv get|dump`: read the key-value store (`KV_URL`) back, as JSON lines.

Every row carries the value's bytes (`value_b64`); with `--type` it also carries the value
decoded. A value that is not of that type (a store fed by several topics, a wrong
`--type`) does not stop the listing: its row carries `error` instead of `value`, so every
entry is still shown in key order, and the command ends with one line on stderr saying how
many values could not be read and exit code 1, so that a script notices.

Exit codes: 0 every value shown (and decoded, with `--type`); 1 a key not found, or a value
that is not of `--type`; 2 `KV_URL` (or `--type`) names nothing there, checked before
anything is opened.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import DecodeError

from connectors.config.pipeline import type_pools
from connectors.config.schemas import find_message_class
from connectors.config.settings import RuntimeSettings, load
from connectors.core.errors import ConfigError, Problem
from connectors.core.registry import WRITERS
from connectors.core.writer import KeyValueView

EXIT_OK, EXIT_UNREADABLE = 0, 1

# The file LMDB keeps its data in: a directory without it holds no store.
LMDB_DATA_FILE = "data.mdb"


def _store_problem(url: str) -> Problem | None:
    """Why `url` names no store to read, found without opening anything (None: it may)."""
    scheme, _, rest = url.partition(":")
    if scheme.lower() != "lmdb":
        return None
    path = Path(rest[2:] if rest.startswith("//") else rest)
    if (path / LMDB_DATA_FILE).is_file():
        return None
    where = "does not exist" if not path.exists() else f"holds no {LMDB_DATA_FILE}"
    return Problem(
        "KV_URL",
        f"no key-value store there ({path} {where}); expected the lmdb: directory a "
        "`connector run` with this KV_URL wrote to",
        url,
    )


def open_view(environ: Mapping[str, str]) -> KeyValueView:
    plugin = WRITERS.get("kv")
    problems: list[Problem] = []
    settings = load(plugin.settings, environ, problems)
    if problems or settings is None:
        raise ConfigError(problems)
    missing = _store_problem(str(getattr(settings, "url", "")))
    if missing is not None:
        raise ConfigError([missing])
    view: KeyValueView = plugin.open_view(settings)
    return view


def renderer(type_name: str | None, environ: Mapping[str, str]) -> type | None:
    """The message class `--type` names, from PROTO_DESCRIPTOR_SET / PROTO_MODULES."""
    if not type_name:
        return None
    problems: list[Problem] = []
    runtime_env = {"TOPICS": "-", "CONNECTOR_NAME": "kv", **environ}
    runtime = load(RuntimeSettings, runtime_env, problems)
    pools = type_pools(runtime, problems) if runtime is not None else None
    if pools is None:
        raise ConfigError(problems)
    cls = find_message_class(type_name, pools)
    if cls is None:
        raise ConfigError(
            [Problem("--type", "a type in PROTO_DESCRIPTOR_SET or PROTO_MODULES", type_name)]
        )
    return cls


def _decoded(value: bytes, render: type) -> dict[str, Any]:
    """`{"value": ...}`, or `{"error": ...}` when `value` is not a `render`."""
    message = render()
    try:
        message.ParseFromString(value)
        decoded = MessageToDict(message, preserving_proto_field_name=True)
    except (DecodeError, ValueError, TypeError, KeyError, RecursionError) as exc:
        text = str(exc) or type(exc).__name__
        # protobuf's own text repeats the type: "Error parsing message with type 'T': why"
        reason = text.rpartition(": ")[2] if text.startswith("Error parsing message") else text
        return {"error": f"not a {message.DESCRIPTOR.full_name}: {reason}"}
    return {"value": decoded}


def row(key: bytes, value: bytes, render: type | None) -> tuple[str, bool]:
    """One JSON line for an entry, and whether its value could be read as `render`."""
    fields: dict[str, object] = {
        "key": key.decode("utf-8", "backslashreplace"),
        "value_b64": base64.b64encode(value).decode(),
    }
    if render is not None:
        fields.update(_decoded(value, render))
    return json.dumps(fields, sort_keys=True), "error" not in fields


def cmd_get(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    render = renderer(args.type, environ)
    view = open_view(environ)
    try:
        value = view.get(args.key.encode())
    finally:
        view.close()
    if value is None:
        print(f"not found: {args.key}", file=sys.stderr)
        return EXIT_UNREADABLE
    if args.raw:
        sys.stdout.buffer.write(value)
        return EXIT_OK
    line, readable = row(args.key.encode(), value, render)
    print(line)
    if not readable:
        print(f"kv get: the value of {args.key!r} is not a {args.type}", file=sys.stderr)
        return EXIT_UNREADABLE
    return EXIT_OK


def cmd_dump(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    render = renderer(args.type, environ)
    view = open_view(environ)
    shown = unreadable = 0
    try:
        for key, value in view.items(args.limit):
            line, readable = row(key, value, render)
            print(line)
            shown += 1
            unreadable += not readable
    finally:
        view.close()
    if unreadable:
        print(
            f"kv dump: {unreadable} of {shown} values are not a {args.type} "
            '(their rows carry "error" instead of "value")',
            file=sys.stderr,
        )
        return EXIT_UNREADABLE
    return EXIT_OK


def add_parser(sub: Any) -> None:
    kv = sub.add_parser("kv", help="read the key-value store (KV_URL) back")
    kv_sub = kv.add_subparsers(dest="kv_command", required=True)
    get = kv_sub.add_parser("get", help="print one key's value as a JSON line")
    get.add_argument("key")
    get.add_argument("--raw", action="store_true", help="write the value's bytes to stdout")
    get.add_argument("--type", help="protobuf type to render the value with")
    get.set_defaults(handler=cmd_get)
    dump = kv_sub.add_parser("dump", help="print every entry as a JSON line, in key order")
    dump.add_argument("--limit", type=int, default=None)
    dump.add_argument("--type", help="protobuf type to render values with")
    dump.set_defaults(handler=cmd_dump)

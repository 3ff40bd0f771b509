"""`connector status`: a running group's state, per partition, from the brokers and the
members' own `/healthz`.

The brokers say who holds each partition (the group's description), what is committed
(the group's offsets) and where each partition ends (a consumer without a group): nothing
here joins the group, so looking never rebalances it. Each member's `/healthz` adds what
only the member knows: whether the partition is idle, progressing, stuck or blocked, and
how long its committed offset has not moved while behind. A member's health URL is its
client host (from the group's description) with METRICS_PORT, or given with `--health`;
one that does not answer leaves its partitions `unknown`, never the command failed.

Last commit age: the `unchanged_for_s` of the member's `/healthz` (seconds since the
committed offset last moved while the partition is behind, measured on the member's own
clock); Kafka's offset fetch returns no commit time, and a caught-up partition has nothing
to commit, so its age is empty.

Exit 0 when every partition is healthy (idle or progressing, as its member says), 1
otherwise (including unknown and unassigned ones), 2 on bad configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from connectors.config.settings import KafkaSettings, RuntimeSettings, load
from connectors.core.errors import ConfigError, Problem
from connectors.core.records import TopicPartition
from connectors.kafka.groups import Group, Member, describe_group
from connectors.kafka.offsets import BrokerOffsets, OffsetsUnavailable
from connectors.observability.health.judge import HEALTHY

__all__ = ["Health", "Row", "Snapshot", "add_parser", "cmd_status", "table"]

EXIT_OK, EXIT_UNHEALTHY = 0, 1
_CLEAR = "\x1b[H\x1b[2J"


@dataclass(frozen=True, slots=True)
class Health:
    """What one `/healthz` answered (`body`), or why it did not (`error`)."""

    url: str
    body: dict[str, Any] | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Row:
    topic: str
    partition: int
    member: str | None
    client_id: str | None
    host: str | None
    committed: int | None
    end: int | None
    lag: int | None
    state: str
    last_commit_age_s: float | None

    @property
    def healthy(self) -> bool:
        return self.state in HEALTHY


@dataclass(slots=True)
class Snapshot:
    group: str
    state: str
    members: list[dict[str, Any]] = field(default_factory=list)
    partitions: list[Row] = field(default_factory=list)
    healths: list[Health] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return bool(self.partitions) and all(row.healthy for row in self.partitions)

    def as_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "state": self.state,
            "healthy": self.healthy,
            "members": self.members,
            "partitions": [asdict(row) for row in self.partitions],
            "lag": sum(row.lag or 0 for row in self.partitions),
            "health": [
                {
                    "url": h.url,
                    "status": None if h.body is None else h.body.get("status"),
                    "error": h.error,
                }
                for h in self.healths
            ],
        }


def health_url(given: str) -> str:
    """`given` as the URL of a `/healthz`: a bare `http://host:port` gets the path."""
    parsed = urllib.parse.urlsplit(given)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError([Problem("--health", "expected an http:// or https:// URL", given)])
    if parsed.path in ("", "/"):
        parsed = parsed._replace(path="/healthz")
    return urllib.parse.urlunsplit(parsed)


def _fetch(url: str, timeout_s: float) -> Health:
    """One `/healthz`; its 503 answers carry a body too."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
    try:
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
        body = json.loads(raw)
        if not isinstance(body, dict):
            return Health(url, None, "not a /healthz answer")
        return Health(url, body)
    except (OSError, ValueError) as exc:
        return Health(url, None, f"{type(exc).__name__}: {exc}")


async def _healths(urls: Sequence[str], timeout_s: float) -> list[Health]:
    return list(await asyncio.gather(*(asyncio.to_thread(_fetch, u, timeout_s) for u in urls)))


def _member_urls(group: Group, port: int) -> list[str]:
    if not port:
        return []
    hosts = sorted({m.host for m in group.members if m.host})
    return [f"http://{host}:{port}/healthz" for host in hosts]


def _holds(health: Health, partitions: Sequence[TopicPartition]) -> bool:
    held = {(p["topic"], p["partition"]) for p in (health.body or {}).get("partitions", [])}
    return bool(held & set(partitions))


def _members(group: Group, healths: Sequence[Health]) -> list[dict[str, Any]]:
    """Each member with the `/healthz` that reports its partitions (`unknown` if none
    does: not answering, or a member that holds nothing)."""
    found = []
    for member in group.members:
        health = next((h for h in healths if _holds(h, member.partitions)), None)
        state = "unknown"
        if health is not None and health.body is not None:
            state = str(health.body.get("status", "unknown"))
        found.append(
            {
                "member_id": member.member_id,
                "client_id": member.client_id,
                "host": member.host,
                "partitions": [[t, p] for t, p in member.partitions],
                "health": state,
                "health_url": None if health is None else health.url,
            }
        )
    return found


def _row(
    tp: TopicPartition,
    holder: Member | None,
    committed: int | None,
    end: int | None,
    seen: dict[str, Any] | None,
) -> Row:
    lag = None if committed is None or end is None else max(0, end - committed)
    state = "unassigned" if holder is None else "unknown"
    age = None
    if seen is not None and holder is not None:
        state, age = str(seen["reason"]), seen.get("unchanged_for_s")
    return Row(
        tp[0],
        tp[1],
        None if holder is None else holder.member_id,
        None if holder is None else holder.client_id,
        None if holder is None else holder.host,
        committed,
        end,
        lag,
        state,
        age,
    )


async def snapshot(
    kafka: KafkaSettings,
    group_id: str,
    topics: Sequence[str],
    offsets: BrokerOffsets,
    health: Sequence[str] | None,
    metrics_port: int,
    timeout_s: float,
) -> Snapshot:
    """The group now: members and assignments, offsets, and each member's `/healthz`."""
    group = await describe_group(kafka, group_id, f"{group_id}-status", timeout_s)
    holders = {tp: m for m in group.members for tp in m.partitions}
    try:
        partitions = await offsets.partitions(tuple(topics)) | set(holders)
        committed, ends = await offsets.fetch(partitions)
    except OffsetsUnavailable as exc:
        raise ConnectionError(str(exc)) from exc
    urls = list(health) if health is not None else _member_urls(group, metrics_port)
    healths = await _healths(urls, timeout_s)
    seen: dict[TopicPartition, dict[str, Any]] = {}
    for answer in healths:
        for p in (answer.body or {}).get("partitions", []):
            seen.setdefault((p["topic"], p["partition"]), p)
    rows = [
        _row(tp, holders.get(tp), committed.get(tp), ends.get(tp), seen.get(tp))
        for tp in sorted(partitions)
    ]
    return Snapshot(group.group_id, group.state, _members(group, healths), rows, healths)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}s"
    return str(value)


def table(found: Snapshot) -> str:
    """The snapshot as aligned text: a summary line, the partitions, the members."""
    columns = ("TOPIC", "PARTITION", "MEMBER", "HOST", "COMMITTED", "END", "LAG", "STATE")
    lines = [[*columns, "LAST COMMIT"]]
    for r in found.partitions:
        cells = (r.topic, r.partition, r.member, r.host, r.committed, r.end, r.lag, r.state)
        lines.append([_cell(c) for c in (*cells, r.last_commit_age_s)])
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    right = {1, 4, 5, 6, 8}
    text = [
        "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in lines
    ]
    verdict = "healthy" if found.healthy else "unhealthy"
    lag = sum(r.lag or 0 for r in found.partitions)
    head = (
        f"group {found.group}: {found.state}, {len(found.members)} members, "
        f"{len(found.partitions)} partitions, lag {lag}: {verdict}"
    )
    members = [
        f"member {m['client_id']} {m['member_id']} ({m['host']}): "
        f"{len(m['partitions'])} partitions, health {m['health']}"
        + (f" at {m['health_url']}" if m["health_url"] else "")
        for m in found.members
    ]
    failed = [f"{h.url} did not answer: {h.error}" for h in found.healths if h.error]
    return "\n".join([head, "", *text, "", *members, *failed])


def _settings(environ: Mapping[str, str]) -> tuple[KafkaSettings, RuntimeSettings]:
    problems: list[Problem] = []
    kafka = load(KafkaSettings, environ, problems)
    runtime = load(RuntimeSettings, environ, problems)
    if problems or kafka is None or runtime is None:
        raise ConfigError(problems)
    return kafka, runtime


#: Seconds the clients get to close once `--watch` is told to stop.
CLOSE_S = 5.0


async def _show(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    kafka, runtime = _settings(environ)
    health = [health_url(u) for u in args.health] if args.health else None
    group_id = kafka.group_id or runtime.connector_name
    offsets = BrokerOffsets(kafka, group_id, f"{group_id}-status", args.timeout)
    stop = asyncio.Event()
    if args.watch is not None:  # Ctrl-C ends the watch between or during snapshots
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
    try:
        while True:
            found = await _unless_stopped(
                stop,
                snapshot(
                    kafka, group_id, runtime.topics, offsets, health, runtime.metrics_port,
                    args.timeout,
                ),
            )  # fmt: skip
            if found is None:
                return EXIT_OK
            out = json.dumps(found.as_dict(), sort_keys=True) if args.json else table(found)
            if args.watch is not None and sys.stdout.isatty():
                out = _CLEAR + out
            elif args.watch is not None and not args.json:
                out = f"{time.strftime('%H:%M:%S')}\n{out}\n"
            print(out, flush=True)
            if args.watch is None:
                return EXIT_OK if found.healthy else EXIT_UNHEALTHY
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), args.watch)
            if stop.is_set():
                return EXIT_OK
    finally:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(offsets.close(), CLOSE_S)


async def _unless_stopped(
    stop: asyncio.Event, work: Coroutine[Any, Any, Snapshot]
) -> Snapshot | None:
    """`work`'s result, or None as soon as `stop` is set (the work is cancelled, and not
    waited for long: a client that swallows its cancellation must not keep Ctrl-C waiting)."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if task.done():
        return task.result()
    task.cancel()
    await asyncio.wait({task}, timeout=CLOSE_S)
    return None


def cmd_status(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    # The client library's own lines would repeat, less clearly, the one line printed here.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        return asyncio.run(_show(args, environ))
    except KeyboardInterrupt:  # Ctrl-C without --watch
        return EXIT_OK
    except ConnectionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNHEALTHY


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError("expected seconds, more than 0 and at most 3600")
    return value


def add_parser(subparsers: Any) -> None:
    status = subparsers.add_parser(
        "status", help="show the group's partitions: member, offsets, lag, health"
    )
    status.add_argument(
        "--health",
        action="append",
        metavar="URL",
        help="a member's /healthz (repeatable); default: each member's host at METRICS_PORT",
    )
    status.add_argument(
        "--watch",
        nargs="?",
        type=_seconds,
        const=2.0,
        metavar="S",
        help="refresh every S seconds (default 2) until Ctrl-C",
    )
    status.add_argument("--json", action="store_true", help="one JSON object per refresh")
    status.add_argument(
        "--timeout", type=_seconds, default=10.0, help="seconds for each call (default 10)"
    )
    status.set_defaults(handler=cmd_status)

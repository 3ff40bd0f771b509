"""`connector check [--connect]`: the resolved pipeline, then (optionally) the live system.

Without `--connect` nothing is connected: the environment is validated and printed, one
block per component, one `NAME=value` per line (`connectors.config.shown`).

With `--connect` each part of the pipeline is tried within `--deadline` seconds, one line
per probe, `ok|fail <probe>: <detail>`: the brokers (TLS and SASL accepted), each topic
(partitions, retention.ms), the group's committed offsets and lag, the last `--sample`
messages of each topic decoded with the bound type, the transform chain run on those, the
dead-letter topic, and the writer's own `check()` (start, check, close). Nothing is
written or committed: the messages are read by a consumer without a group, the chain's
output is counted and dropped, no topic is created.

Exit codes: 0 every probe ok, 1 a probe failed, 2 the configuration is invalid.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping
from typing import Any

from connectors.cli.check_probes import Session, kafka_probes, transforms_probe, writer_probe
from connectors.config.pipeline import resolve
from connectors.kafka.probe import BrokerProbe

__all__ = ["add_parser", "cmd_check"]

EXIT_OK, EXIT_FAILED = 0, 1

HELP = """\
--connect tries the live system and prints one line per probe: ok|fail <probe>: <detail>.
It reads the last --sample messages of each topic with a consumer that has no group (no
commit, the group untouched), decodes them with the bound type and runs the transform
chain on them: a transform's ctx.http calls are real requests. The writer is started,
checked and closed; nothing is written, no topic is created.
Exit 0 all ok, 1 a probe failed, 2 invalid configuration."""


def add_parser(sub: Any) -> None:
    check = sub.add_parser(
        "check",
        help="validate the environment and print the pipeline (--connect: test the live system)",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("--connect", action="store_true", help="test the live system")
    check.add_argument(
        "--deadline", type=_positive, default=30.0, help="seconds for every probe (30)"
    )
    check.add_argument(
        "--sample", type=int, default=100, help="messages read from the end of each topic (100)"
    )
    check.set_defaults(handler=cmd_check)


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"a number of seconds > 0, not {text}")
    return value


def cmd_check(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    pipeline = resolve(environ)
    print(pipeline.describe())
    if not getattr(args, "connect", False):
        return EXIT_OK
    print("", flush=True)
    session = Session(pipeline, args.deadline, max(0, args.sample))
    asyncio.run(_connect(session))
    return EXIT_OK if all(p.ok for p in session.probes) else EXIT_FAILED


async def _connect(session: Session) -> None:
    probe = BrokerProbe(session.pipeline.kafka, session.deadline_s)
    try:
        await kafka_probes(session, probe)
    finally:
        await probe.close()
    await transforms_probe(session)
    await writer_probe(session)
    print(
        f"{sum(p.ok for p in session.probes)} ok, {sum(not p.ok for p in session.probes)} failed",
        file=sys.stderr,
    )

"""Run the audit-log push on this machine, end to end, with real servers.

Kafka (KRaft, from Maven Central jars) and S3Proxy (an S3 API on a local folder) start from
the test harness; 5,000 audit events go in with kcat; the connector runs with
`audit-log-push.env`, its R2 address swapped for the local S3Proxy; the objects it wrote
are listed, each event checked to be in its account's and day's folder, once. Run from
the repository root:

    .venv/bin/python examples/audit-log-push/demo.py
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from connectors.config.schemas import find_message_class, load_descriptor_set  # noqa: E402
from harness.kafka import KafkaBroker, create_topic  # noqa: E402
from harness.kcat import produce  # noqa: E402
from harness.s3 import S3ProxyServer  # noqa: E402

EVENTS = 5000
ACTIONS = ["zone.settings.update", "dns.record.create", "user.login", "api_token.roll"]


def env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value.strip()
    return pairs


def audit_events(count: int) -> list[tuple[int, bytes, bytes]]:
    pool = load_descriptor_set(HERE / "audit.binpb")
    event = find_message_class("audit.v1.AuditEvent", (pool,))
    if event is None:
        raise SystemExit("descriptor set lacks the message type")
    rows = []
    for n in range(count):
        account = 1000 + n % 37
        message = event(
            id=f"evt-{n:06d}",
            account_id=account,
            actor_email=f"admin{n % 5}@customer{account}.example",
            actor_ip=f"192.0.2.{n % 250}",
            action=ACTIONS[n % len(ACTIONS)],
            resource=f"zone/z{n % 400:05d}",
            metadata={"via": "api" if n % 3 else "dashboard"},
            occurred_at_ms=1_767_225_600_000 + n * 60_000,  # from 2026-01-01, one a minute
        )
        rows.append((account % 3, str(account).encode(), message.SerializeToString()))
    return rows


def main() -> int:
    settings = env_file(HERE / "audit-log-push.env")
    with KafkaBroker() as kafka, S3ProxyServer() as s3:
        s3.create_bucket(settings["S3_BUCKET"])
        create_topic(kafka.bootstrap, "audit.v1", partitions=3)
        create_topic(kafka.bootstrap, f"{settings['CONNECTOR_NAME']}.dlq", partitions=1)
        produce(kafka.bootstrap, "audit.v1", audit_events(EVENTS))
        local = {k: v for k, v in s3.env(settings["S3_BUCKET"]).items() if k != "S3_REGION"}
        env = {
            **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")},
            **settings,
            **local,  # S3Proxy instead of R2; S3_REGION stays `auto`, as for R2
            "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
            "METRICS_PORT": "0",
        }
        done = subprocess.run(
            [sys.executable, "-m", "connectors.cli", "run", "--until-caught-up"],
            env=env, cwd=ROOT, check=False, capture_output=True, text=True,
        )  # fmt: skip
        print(*[line for line in done.stderr.splitlines() if "caught up:" in line][-1:])
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return done.returncode
        objects = s3.files(settings["S3_BUCKET"], settings["S3_PREFIX"])
        ids: list[str] = []
        misplaced = 0
        for n, (key, data) in enumerate(objects.items()):
            docs = [json.loads(line) for line in gzip.decompress(data).decode().splitlines()]
            ids += [doc["id"] for doc in docs]
            misplaced += sum(f"/{folder(doc)}/" not in key for doc in docs)
            if n < 10:
                print(f"{key}  ({len(docs)} events)")
        first = gzip.decompress(next(iter(objects.values()))).decode().splitlines()[0]
        folders = {key.rsplit("/", 1)[0] for key in objects}
        print(
            f"... {len(objects)} objects in {len(folders)} account/day folders, {len(ids)} "
            f"events ({len(set(ids))} distinct), {misplaced} in a wrong folder; first line:"
            f"\n{first}"
        )
        return 0 if sorted(set(ids)) == sorted(ids) and len(ids) == EVENTS and not misplaced else 1


def folder(doc: dict[str, str]) -> str:
    """The folder an event belongs in: its account and the UTC day of its own time."""
    day = datetime.fromtimestamp(int(doc["occurred_at_ms"]) / 1000, tz=UTC)
    return f"account={doc['account_id']}/dt={day:%Y-%m-%d}"


if __name__ == "__main__":
    sys.exit(main())

"""Run the email dispatch on this machine, end to end, with real servers.

Kafka (KRaft, from Maven Central jars) starts from the test harness, with two local HTTP
services standing in for the other teams' (`harness.email_services`): a template registry
that answers 503 to 10 % of calls, and a mail API that answers 500 to 10 % of requests and
deduplicates on the idempotency key. 1,000 email requests go in with kcat (1 % naming a
retired template, 1 % lacking a variable); the connector runs with `email-dispatch.env`, its
addresses swapped for the local ones, until caught up; then what the mail API took, what the
registry was asked and what was dead-lettered are printed. Run from the repository root:

    .venv/bin/python examples/email-dispatch/demo.py
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaConsumer  # noqa: E402

from harness.email_services import (  # noqa: E402
    MailApi,
    TemplateRegistry,
    email_events,
    sample_templates,
)
from harness.kafka import KafkaBroker, create_topic  # noqa: E402
from harness.kcat import produce  # noqa: E402

EVENTS = 1000


def env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value.strip()
    return pairs


def dead_letters(bootstrap: str, topic: str, expected: int) -> list[tuple[str, str]]:
    """(dlq.stage, dlq.error.message) of the first `expected` letters of `topic`."""

    async def read() -> list[tuple[str, str]]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
        )
        await consumer.start()
        letters: list[tuple[str, str]] = []
        try:
            for _ in range(100):
                if len(letters) >= expected:
                    break
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    for letter in batch:
                        headers = {k: v.decode() for k, v in letter.headers}
                        letters.append((headers["dlq.stage"], headers["dlq.error.message"]))
        finally:
            await consumer.stop()
        return letters

    return asyncio.run(read())


def main() -> int:
    settings = env_file(HERE / "email-dispatch.env")
    templates = sample_templates()
    events = email_events(EVENTS, templates=templates)
    registry = TemplateRegistry(templates, unavailable=0.1, rng=1)
    mail = MailApi(failing=0.1, rng=2)
    with KafkaBroker() as kafka, registry, mail:
        create_topic(kafka.bootstrap, settings["TOPICS"], partitions=3)
        produce(kafka.bootstrap, settings["TOPICS"], events.rows)
        env = {
            **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")},
            **settings,
            "PYTHONPATH": str(HERE),
            "PROTO_DESCRIPTOR_SET": str(HERE / "email.binpb"),
            "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
            "EMAIL_TEMPLATES_URL": registry.url(),
            "HTTP_URL": mail.url(MailApi.path),
            "DLQ_CREATE": "true",  # the local broker, like production, creates no topic
            "METRICS_PORT": "0",
            "RETRY_INITIAL_MS": "50",
            "RETRY_MAX_MS": "500",
        }
        done = subprocess.run(
            [sys.executable, "-m", "connectors.cli", "run", "--until-caught-up"],
            env=env, cwd=ROOT, check=False, capture_output=True, text=True,
        )  # fmt: skip
        print(*[line for line in done.stderr.splitlines() if "caught up:" in line][-1:])
        if done.returncode != 0:
            print(done.stderr[-5000:], file=sys.stderr)
            return done.returncode
        accepted = mail.accepted_ids()
        letters = dead_letters(kafka.bootstrap, settings["DLQ_TOPIC"], len(events.bad))
        print(
            f"mail API: {len(accepted)} emails accepted ({len(set(accepted))} distinct) in "
            f"{mail.requests} requests ({mail.failed} answered 500, {mail.repeats} repeats "
            f"answered from the idempotency store); {len(events.valid)} expected"
        )
        print(
            f"template registry: {registry.total_fetches} calls for {len(registry.fetches)} "
            f"templates ({registry.unavailable_answers} answered 503)"
        )
        print(f"dead letters: {len(letters)} ({len(events.bad)} expected)")
        for stage, message in letters[:3]:
            print(f"  {stage}: {message}")
        print("first email:", json.dumps(mail.first_email(), indent=2))
        ok = sorted(accepted) == sorted(events.valid) and len(letters) == len(events.bad)
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

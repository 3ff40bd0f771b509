"""Run the three communication-preference connectors side by side, with real servers.

One Kafka topic of preference changes; three connectors (email service, CRM, marketing
email), each in its own consumer group, POST to one local HTTP server under three paths.
The marketing path is made slow and throttling; the demo shows the other two finishing
first and every system receiving every change. Run from the repository root:

    .venv/bin/python examples/communication-preferences/demo.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from connectors.config.schemas import find_message_class, load_descriptor_set  # noqa: E402
from harness.http_sink import Fault, HttpSink  # noqa: E402
from harness.kafka import KafkaBroker, create_topic  # noqa: E402
from harness.kcat import produce  # noqa: E402

CHANGES = 3000
SYSTEMS = ["email-service", "crm", "marketing-email"]


def env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value.strip()
    return pairs


def changes(count: int) -> list[tuple[int, bytes, bytes]]:
    pool = load_descriptor_set(HERE / "prefs.binpb")
    changed = find_message_class("prefs.v1.PreferenceChanged", (pool,))
    if changed is None:
        raise SystemExit("descriptor set lacks the message type")
    rows = []
    for n in range(count):
        user = n % 700
        message = changed(
            user_id=f"u{user:04d}",
            email=f"user{user}@example.com",
            product_updates=n % 2 == 0,
            marketing=n % 3 == 0,
            sales_contact=n % 5 == 0,
            locale="en-GB",
            changed_at_ms=1_767_225_600_000 + n,
        )
        rows.append((user % 3, f"u{user:04d}".encode(), message.SerializeToString()))
    return rows


def main() -> int:
    with KafkaBroker() as kafka, HttpSink() as sink:
        create_topic(kafka.bootstrap, "comm-prefs.v1", partitions=3)
        produce(kafka.bootstrap, "comm-prefs.v1", changes(CHANGES))
        sink.plan(
            "/import/preferences.ndjson",
            Fault(status=429, retry_after="1"),
            *[Fault(delay_s=1.0)] * 25,
        )
        base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
        started, running = time.monotonic(), {}
        for system in SYSTEMS:
            settings = env_file(HERE / f"{system}.env")
            env = {
                **base,
                **settings,
                "HTTP_URL": sink.url(urlsplit(settings["HTTP_URL"]).path),
                "HTTP_MAX_REQUESTS_PER_S": "0",  # the local stand-in has no quota
                "DLQ_CREATE": "true",
                "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
                "METRICS_PORT": "0",
                "LOG_LEVEL": "WARNING",
            }
            running[system] = subprocess.Popen(
                [sys.executable, "-m", "connectors.cli", "run", "--until-caught-up"],
                env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
        finished: dict[str, tuple[float, str]] = {}

        def wait(system: str) -> None:
            _, err = running[system].communicate(timeout=300)
            finished[system] = (time.monotonic() - started, err)

        waiters = [threading.Thread(target=wait, args=(s,)) for s in SYSTEMS]
        for waiter in waiters:
            waiter.start()
        for waiter in waiters:
            waiter.join()
        failed = 0
        for system, process in sorted(running.items(), key=lambda item: finished[item[0]][0]):
            seconds, err = finished[system]
            path = urlsplit(env_file(HERE / f"{system}.env")["HTTP_URL"]).path
            prefix = path.split("{", 1)[0]  # a routed URL: every path under the literal part
            accepted = [r for r in sink.accepted() if r.path.startswith(prefix)]
            docs = [d.get("value", d) for r in accepted for d in r.documents()]
            users = {d["user_id"] for d in docs}
            methods = sorted({r.method for r in accepted})
            print(
                f"{system:16} exit {process.returncode}  done after {seconds:5.1f}s  "
                f"{len(accepted):5} requests ({'/'.join(methods)})  {len(docs)} changes, "
                f"{len(users)} users"
            )
            if process.returncode != 0 or len(docs) < CHANGES:
                failed += 1
                print(err, file=sys.stderr)
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""The email-dispatch example end to end on the real broker, with both dependencies failing.

5,000 email requests (1 % naming an unknown template, 1 % lacking a variable) go through
`examples/email-dispatch` (its env file, its `render_email` transform, the HTTP writer in
batch mode) while the template registry answers 503 to 20 % of calls and the mail API
answers 500 to 20 % of requests and stalls 2 s on 5 % of them, longer than the writer's
timeout. Every valid email must be taken by the mail API exactly once, the bad ones must be
dead-lettered by the transform, and everything must be committed.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from connectors.config.schemas import find_message_class, load_descriptor_set
from harness.email_services import MailApi, TemplateRegistry, email_events, sample_templates
from harness.kafka import KafkaBroker, consumer_group_offsets, create_topic
from harness.kcat import produce
from tests.conftest import ROOT, connector_env, run_connector

pytestmark = pytest.mark.integration

EXAMPLE = ROOT / "examples" / "email-dispatch"
EVENTS = 5000
REGISTRY_503 = 0.20
MAIL_500 = 0.20
MAIL_STALL = 0.05


def env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value.strip()
    return pairs


def read_letters(bootstrap: str, topic: str, expected: int, timeout: float = 60.0) -> list[Any]:
    """Every record of `topic`: at least `expected`, then half a second more for extras."""

    async def go() -> list[Any]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
        )
        await consumer.start()
        got: list[Any] = []
        try:
            deadline = time.monotonic() + timeout
            while len(got) < expected and time.monotonic() < deadline:
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    got.extend(batch)
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                got.extend(batch)
        finally:
            await consumer.stop()
        return got

    return asyncio.run(go())


def retries_bound(templates: int, failure: float, risk: float = 1e-3) -> int:
    """The fewest extra registry calls `k` such that more than `k` happen with probability
    below `risk`.

    Why this is the distribution: a template is cached once the registry answered it (200,
    or 404 for an unknown one, cached as unusable), loads of one template never overlap
    (concurrent gets share one load), and a failed load is not cached, so each template is
    fetched until its first answer that is not a 503. Each call fails independently with
    probability `failure`, so the failed calls before all `templates` answered are negative
    binomial: P(F = j) = C(templates + j - 1, j) (1 - failure)^templates failure^j. Its mean
    is templates * failure / (1 - failure) (3.75 for 15 templates at 20 %): a bound at the
    mean would fail about every other run; this one fails one run in 1/`risk`."""
    success = 1.0 - failure
    below = 0.0
    for k in range(10_000):
        below += math.comb(templates + k - 1, k) * success**templates * failure**k
        if 1.0 - below < risk:
            return k
    raise AssertionError("no bound")  # pragma: no cover


def test_every_valid_email_is_taken_once_while_registry_and_mail_api_fail(
    kafka: KafkaBroker, unique: str
) -> None:
    templates = sample_templates()
    events = email_events(EVENTS, templates=templates)
    assert len(events.bad) == 100 and len(events.valid) == 4900

    topic = f"email-requested-{unique}"
    name = f"email-dispatch-{unique}"
    create_topic(kafka.bootstrap, topic, partitions=3)
    produce(kafka.bootstrap, topic, events.rows)

    registry = TemplateRegistry(templates, unavailable=REGISTRY_503, rng=14)
    mail = MailApi(failing=MAIL_500, stalling=MAIL_STALL, stall_s=2.0, rng=15)
    with registry, mail:
        example = env_file(EXAMPLE / "email-dispatch.env")
        env = connector_env(
            **{
                **example,
                "CONNECTOR_NAME": name,
                "TOPICS": topic,
                "TOPIC_SCHEMAS": f"{topic}=email.v1.EmailRequested",
                "DLQ_TOPIC": f"{name}.dlq",
                "PYTHONPATH": str(EXAMPLE),
                "PROTO_DESCRIPTOR_SET": str(EXAMPLE / "email.binpb"),
                "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
                "EMAIL_TEMPLATES_URL": registry.url(),
                "HTTP_URL": mail.url(MailApi.path),
                # Below the 2 s stall: a stalled request is a timeout, and the writer sends
                # it again under the same key (the mail API answers from its idempotency
                # store).
                "HTTP_TIMEOUT_S": "1",
                "HTTP_BATCH_MAX_MESSAGES": "50",
                "BATCH_MAX_MESSAGES": "500",
                "TRANSFORM_CACHE_TTL_S": "600",  # no template expires during the run
                "RETRY_INITIAL_MS": "50",
                "RETRY_MAX_MS": "400",
                "LOG_LEVEL": "WARNING",
            }
        )
        done = run_connector("run", "--until-caught-up", env=env, timeout=240)
        assert done.returncode == 0, done.stderr[-5000:]

    # Every valid email taken, each exactly once; nothing else taken.
    taken = Counter(mail.accepted_ids())
    assert set(taken) == events.valid, (
        f"missing {sorted(events.valid - set(taken))[:10]}, "
        f"unexpected {sorted(set(taken) - events.valid)[:10]}"
    )
    assert [i for i, n in taken.items() if n > 1] == []
    # Requests (repeats and refused ones included) against emails taken.
    assert mail.requests <= 1.1 * len(taken), (mail.requests, len(taken))
    print(
        f"\nmail API: {mail.requests} requests ({mail.failed} answered 500, {mail.stalled} "
        f"stalled, {mail.repeats} repeats) carrying {mail.emails_received} emails for "
        f"{len(taken)} taken; registry: {registry.total_fetches} calls, "
        f"{registry.unavailable_answers} answered 503"
    )
    assert mail.failed > 0 and mail.stalled > 0 and registry.unavailable_answers > 0
    # Emails carried by all requests: a request answered 500 (20 %) is sent again until it
    # is taken, 1 / 0.8 = 1.25 sends on average, and a stalled one (5 %) once more (its
    # repeat answered from the idempotency store): about 1.3 x the emails taken. Sending a
    # whole batch again after any failure, instead of only the requests not taken, would
    # carry each email several times.
    assert mail.emails_received <= 1.5 * len(taken), (mail.emails_received, len(taken))

    # The 2 % bad requests are dead letters of the transform, nothing else is.
    pool = load_descriptor_set(EXAMPLE / "email.binpb")
    requested = find_message_class("email.v1.EmailRequested", (pool,))
    assert requested is not None
    letters = read_letters(kafka.bootstrap, f"{name}.dlq", len(events.bad))
    by_id: dict[str, dict[str, bytes]] = {}
    for letter in letters:
        by_id[requested.FromString(letter.value).email_id] = dict(letter.headers)
    assert len(letters) == len(by_id) == len(events.bad)
    assert set(by_id) == events.bad
    assert {h["dlq.stage"] for h in by_id.values()} == {b"transform:render_email"}
    for email_id in events.missing_variable:
        assert b"'code' is undefined" in by_id[email_id]["dlq.error.message"]
    for email_id in events.unknown_template:
        assert b"404" in by_id[email_id]["dlq.error.message"]

    # Everything committed.
    offsets = consumer_group_offsets(kafka.bootstrap, name)
    assert {tp: committed for tp, (committed, _) in offsets.items()} == {
        tp: end for tp, (_, end) in offsets.items()
    }
    assert sum(end for _, end in offsets.values()) == EVENTS

    # The cache kept the registry calls to one per template plus the 503s' retries:
    # templates x (1 + retries expected per template), the retries bounded as the
    # retries_bound docstring derives from the 20 % rate (15 templates: 12 known, 3 unknown).
    distinct = len(templates) + len({f"tpl-retired-{n}" for n in range(3)})
    assert set(registry.fetches) <= set(templates) | {f"tpl-retired-{n}" for n in range(3)}
    retries = retries_bound(distinct, REGISTRY_503)
    assert registry.total_fetches <= distinct * (1 + retries / distinct), (
        registry.fetches,
        retries,
    )

"""Kafka over TLS and SASL against a secured broker (`harness.secure_kafka`: TLS from a test
CA, SCRAM users, StandardAuthorizer ACLs): what works over each protocol, the one line each
refusal prints, and that no secret ever reaches an output or a dead letter.

Every user but the broker's admin starts with no permission; the module grants READ on
topics prefixed `readable-` and groups prefixed `ok-`, and each test grants the rest.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from google.protobuf.json_format import MessageToDict

from harness.http_sink import Fault, HttpSink
from harness.kafka import consumer_group_offsets, create_topic, list_topics_async, run_sync
from harness.kcat import end_offsets, produce
from harness.redis import RedisServer
from harness.s3 import S3ProxyServer
from harness.samples import SampleEvent, zone_events
from harness.secure_kafka import Protocol, SecureKafkaBroker
from tests.conftest import EDGE_DESCRIPTORS, ROOT, connector_command, connector_env
from tests.integration.test_runner_kafka import expected_store, read_lmdb

pytestmark = pytest.mark.integration

EVENTS = 300
POISON = b"\xff\xff\xff\xff"
USER = "connector"
NOWRITE = "nowrite"  # READ on readable-*/ok-* and nothing else, not even WRITE elsewhere
MTLS_USER = "mtls-client"
BUCKET = "leak-bucket"


def secret(label: str) -> str:
    """A known secret: a label no output has any reason to contain, then 16 random hex
    digits; plain characters, so that no encoding can hide it."""
    return f"{label}-{secrets.token_hex(8)}"


KAFKA_PASSWORD = secret("kafka-pw")
NOWRITE_PASSWORD = secret("nowrite-pw")
WRONG_KAFKA_PASSWORD = secret("bad-kafka-pw")
REDIS_PASSWORD = secret("redis-pw")
WRONG_REDIS_PASSWORD = secret("bad-redis-pw")
WRONG_S3_SECRET = secret("bad-s3-key")
HTTP_TOKEN = secret("http-token")
# Every character a URL reserves, '%', a space and a non-ASCII letter, between plain parts:
# a mask that stops at any of them shows the part before or after it.
URL_RESERVED = ":/?#[]@!$&'()*+,;=% é"
RESERVED_PASSWORD = f"{secret('rsv-pw')}{URL_RESERVED}{secrets.token_hex(5)}"
WRONG_RESERVED_PASSWORD = f"{secret('bad-rsv-pw')}{URL_RESERVED}{secrets.token_hex(5)}"

# Bounds for a refusal: one attempt, no backoff loop. A retry storm shows as many more log
# lines (each attempt logs), a "retrying" line, or a run until the subprocess timeout.
MAX_FAILURE_SECONDS = 30.0
MAX_FAILURE_LINES = 40


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def secure() -> Iterator[SecureKafkaBroker]:
    broker = SecureKafkaBroker(
        users={USER: KAFKA_PASSWORD, NOWRITE: NOWRITE_PASSWORD}, client_user=MTLS_USER
    )
    broker.start()
    try:
        broker.grant(
            [USER, NOWRITE, MTLS_USER],
            ["READ"],
            topics=["readable-"],
            groups=["ok-"],
            prefixed=True,
        )
        yield broker
    finally:
        broker.close()


@pytest.fixture(scope="module")
def events() -> list[SampleEvent]:
    return list(zone_events(EVENTS))


@pytest.fixture(scope="module")
def events_topic(
    secure: SecureKafkaBroker, events: list[SampleEvent]
) -> tuple[str, dict[int, int]]:
    """A readable topic holding the sample events, produced by kcat; its end offsets."""
    name = f"readable-events-{uuid.uuid4().hex[:8]}"
    create_topic(secure.bootstrap, name, partitions=3)
    ends = produce(secure.bootstrap, name, [(e.partition, e.key, e.value) for e in events])
    assert sum(ends.values()) == EVENTS
    return name, ends


def edge_env(
    broker: SecureKafkaBroker,
    protocol: Protocol,
    *,
    topic: str,
    group: str,
    store: Path,
    user: str = USER,
    mechanism: str = "SCRAM-SHA-512",
    **extra: str,
) -> dict[str, str]:
    sasl_user = user if protocol.startswith("SASL_") else None
    settings = {
        "CONNECTOR_NAME": group,
        "TOPICS": topic,
        "TOPIC_SCHEMAS": f"{topic}=edge.v1.ZoneSettingsChanged",
        "PROTO_DESCRIPTOR_SET": str(EDGE_DESCRIPTORS),
        "TRANSFORMS": "pf_edge",
        "KV_URL": f"lmdb:{store}",
        "KV_SYNC": "false",
        "PYTHONPATH": str(ROOT),
        **broker.client_env(protocol, user=sasl_user, mechanism=mechanism),
    }
    return connector_env(**{**settings, **extra})


@dataclass(frozen=True)
class Ran:
    what: str
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def lines(self) -> list[str]:
        return self.stderr.splitlines()


def run(what: str, *args: str, env: dict[str, str], stdin: str | None = None) -> Ran:
    started = time.monotonic()
    done = subprocess.run(
        connector_command(*args),
        env=env,
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return Ran(what, done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def committed(broker: SecureKafkaBroker, group: str, topic: str) -> dict[int, int | None]:
    table = consumer_group_offsets(broker.bootstrap, group)
    return {p: c for (t, p), (c, _end) in table.items() if t == topic}


def assert_refused(ran: Ran, pattern: str) -> None:
    """Exit 1 after one attempt, with exactly one `fatal:` line, matching `pattern`."""
    fatal = [line for line in ran.lines if line.startswith("fatal: ")]
    assert ran.returncode == 1, ran.stderr
    assert len(fatal) == 1, ran.stderr
    assert re.fullmatch(pattern, fatal[0]), f"{fatal[0]!r} !~ {pattern!r}"
    assert not [line for line in ran.lines if "retrying" in line], ran.stderr
    assert len(ran.lines) <= MAX_FAILURE_LINES, ran.stderr
    assert ran.seconds < MAX_FAILURE_SECONDS, ran.stderr


# ------------------------------------------------------------------------- it works


@pytest.mark.parametrize(
    ("protocol", "mechanism"),
    [
        ("SASL_SSL", "SCRAM-SHA-256"),
        ("SASL_SSL", "SCRAM-SHA-512"),
        ("SASL_PLAINTEXT", "SCRAM-SHA-512"),
        ("SASL_PLAINTEXT", "PLAIN"),
        ("SSL", "-"),
        ("PLAINTEXT", "-"),
    ],
)
def test_run_until_caught_up_into_lmdb_over(
    protocol: Protocol,
    mechanism: str,
    secure: SecureKafkaBroker,
    events_topic: tuple[str, dict[int, int]],
    events: list[SampleEvent],
    unique: str,
    tmp_path: Path,
) -> None:
    topic, ends = events_topic
    group = f"ok-{unique}"
    env = edge_env(
        secure, protocol, topic=topic, group=group, store=tmp_path / "kv", mechanism=mechanism,
        ON_ERROR="fail",  # no poison here: no dead-letter topic to check at start
    )  # fmt: skip
    done = run("run", "run", "--until-caught-up", env=env)
    assert done.returncode == 0, done.stderr
    assert f"caught up: {EVENTS}/{EVENTS} records" in done.stderr
    assert read_lmdb(tmp_path / "kv") == expected_store(events)
    assert committed(secure, group, topic) == ends


# ------------------------------------------------------------- each refusal, one line


def test_wrong_password_is_fatal_at_once(
    secure: SecureKafkaBroker, events_topic: tuple[str, dict[int, int]], unique: str, tmp_path: Path
) -> None:
    topic, _ = events_topic
    env = edge_env(
        secure, "SASL_SSL", topic=topic, group=f"ok-{unique}", store=tmp_path / "kv",
        mechanism="SCRAM-SHA-256", KAFKA_SASL_PASSWORD=WRONG_KAFKA_PASSWORD,
    )  # fmt: skip
    ran = run("wrong password", "run", "--until-caught-up", env=env)
    server = re.escape(secure.bootstrap_for("SASL_SSL"))
    assert_refused(
        ran,
        rf"fatal: kafka: authentication failed for user '{USER}' with SCRAM-SHA-256 at "
        rf"{server}: .*invalid credentials.* \(check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD "
        r"and KAFKA_SASL_MECHANISM\)",
    )


def test_unknown_ca_is_fatal_at_once(
    secure: SecureKafkaBroker, events_topic: tuple[str, dict[int, int]], unique: str, tmp_path: Path
) -> None:
    topic, _ = events_topic
    other_ca = str(secure.pki.other_ca_file)
    env = edge_env(
        secure, "SASL_SSL", topic=topic, group=f"ok-{unique}", store=tmp_path / "kv",
        KAFKA_SSL_CAFILE=other_ca,
    )  # fmt: skip
    ran = run("unknown CA", "run", "--until-caught-up", env=env)
    server = re.escape(secure.bootstrap_for("SASL_SSL"))
    assert_refused(
        ran,
        rf"fatal: kafka: TLS: the certificate of {server} is not trusted: unable to get local "
        rf"issuer certificate \(check KAFKA_SSL_CAFILE={re.escape(other_ca)} and "
        r"KAFKA_SSL_CHECK_HOSTNAME\)",
    )


def test_missing_client_certificate_is_fatal_at_once(
    secure: SecureKafkaBroker, events_topic: tuple[str, dict[int, int]], unique: str, tmp_path: Path
) -> None:
    topic, _ = events_topic
    env = edge_env(secure, "SSL", topic=topic, group=f"ok-{unique}", store=tmp_path / "kv")
    for name in ("KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE", "KAFKA_SSL_KEY_PASSWORD"):
        del env[name]
    ran = run("no client certificate", "run", "--until-caught-up", env=env)
    server = re.escape(secure.bootstrap_for("SSL"))
    assert_refused(
        ran,
        rf"fatal: kafka: TLS: {server} refused our client certificate \(\w+_CERTIFICATE\w*; "
        r"check KAFKA_SSL_CERTFILE=\(none\) and KAFKA_SSL_KEYFILE\)",
    )


def test_missing_read_on_the_topic_names_topic_and_permission(
    secure: SecureKafkaBroker, events: list[SampleEvent], unique: str, tmp_path: Path
) -> None:
    topic = f"private-{unique}"  # not readable-*: the group is allowed, the topic is not
    create_topic(secure.bootstrap, topic, partitions=1)
    produce(secure.bootstrap, topic, [(0, e.key, e.value) for e in events[:10]])
    group = f"ok-{unique}"
    env = edge_env(
        secure, "SASL_SSL", topic=topic, group=group, store=tmp_path / "kv", ON_ERROR="fail"
    )
    ran = run("no READ on topic", "run", "--until-caught-up", env=env)
    assert_refused(
        ran,
        rf"fatal: kafka: not authorized: READ on topic '{topic}' denied to user '{USER}' "
        r"\(TOPIC_AUTHORIZATION_FAILED\)",
    )
    assert committed(secure, group, topic) == {}


def test_missing_read_on_the_group_names_group_and_permission(
    secure: SecureKafkaBroker, events_topic: tuple[str, dict[int, int]], unique: str, tmp_path: Path
) -> None:
    topic, _ = events_topic
    group = f"unlisted-{unique}"  # not ok-*: the topic is readable, the group is not
    env = edge_env(
        secure, "SASL_SSL", topic=topic, group=group, store=tmp_path / "kv", ON_ERROR="fail"
    )
    ran = run("no READ on group", "run", "--until-caught-up", env=env)
    assert_refused(
        ran,
        rf"fatal: kafka: not authorized: READ on group '{group}' denied to user '{USER}' "
        r"\(GROUP_AUTHORIZATION_FAILED\)",
    )


@pytest.mark.parametrize(
    "write_elsewhere", [False, True], ids=["no-write-at-all", "write-elsewhere"]
)
def test_missing_write_on_the_dead_letter_topic_names_it(
    write_elsewhere: bool,
    secure: SecureKafkaBroker,
    events: list[SampleEvent],
    unique: str,
    tmp_path: Path,
) -> None:
    """Without WRITE on any topic the idempotent producer is refused at InitProducerId
    (a cluster authorization error); with WRITE elsewhere, at the send itself. Either way
    the line names the dead-letter topic and WRITE, and nothing past the poison record is
    committed."""
    topic = f"readable-poison-{unique}"
    create_topic(secure.bootstrap, topic, partitions=1)
    good = [(0, e.key, e.value) for e in events[:20]]
    produce(secure.bootstrap, topic, [*good, (0, b"poison", POISON)])
    user = USER if write_elsewhere else NOWRITE
    group = f"ok-dlq-{unique}"
    create_topic(secure.bootstrap, f"{group}.dlq", partitions=1)  # onboarded, but not granted
    if write_elsewhere:
        elsewhere = f"elsewhere-{unique}"
        create_topic(secure.bootstrap, elsewhere, partitions=1)
        secure.grant(USER, ["WRITE"], topics=[elsewhere])
    env = edge_env(secure, "SASL_SSL", topic=topic, group=group, store=tmp_path / "kv", user=user)
    ran = run("no WRITE on the dead-letter topic", "run", "--until-caught-up", env=env)
    dlq = re.escape(f"{group}.dlq")
    cause = (
        r"TopicAuthorizationFailedError; if the topic does not exist yet, creating it needs "
        r"CREATE"
        if write_elsewhere
        else r"ClusterAuthorizationFailedError; the idempotent producer needs WRITE on the "
        r"topic \(or IDEMPOTENT_WRITE on the cluster\)"
    )
    assert_refused(
        ran,
        rf"fatal: dead-letter topic '{dlq}' cannot be written: not authorized: WRITE on "
        rf"topic '{dlq}' denied to user '{user}' \({cause}\)",
    )
    assert (committed(secure, group, topic).get(0) or 0) <= len(good)


# ------------------------------------------------------------ secrets never leak


@pytest.fixture(scope="module")
def redis_with_password() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        client = redis.Redis(host="127.0.0.1", port=server.port)
        client.config_set("requirepass", REDIS_PASSWORD)
        client.close()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def s3() -> Iterator[S3ProxyServer]:
    with S3ProxyServer() as server:
        server.create_bucket(BUCKET)
        yield server


@pytest.fixture(scope="module")
def sink() -> Iterator[HttpSink]:
    with HttpSink() as server:
        yield server


@pytest.fixture(scope="module")
def redis_with_reserved_password() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        client = redis.Redis(host="127.0.0.1", port=server.port)
        client.config_set("requirepass", RESERVED_PASSWORD)
        client.close()
        yield server
    finally:
        server.close()


def redis_url(server: RedisServer, password: str) -> str:
    return f"redis://:{password}@127.0.0.1:{server.port}/0"


def encoded(password: str) -> str:
    return quote(password, safe="")


def known_secrets(broker: SecureKafkaBroker, s3: S3ProxyServer) -> dict[str, str]:
    return {
        "KAFKA_SASL_PASSWORD": KAFKA_PASSWORD,
        "the other Kafka user's password": NOWRITE_PASSWORD,
        "a wrong KAFKA_SASL_PASSWORD": WRONG_KAFKA_PASSWORD,
        "KAFKA_SSL_KEY_PASSWORD": broker.pki.client_key_password,
        "the redis password in KV_URL": REDIS_PASSWORD,
        "a wrong redis password": WRONG_REDIS_PASSWORD,
        "AWS_SECRET_ACCESS_KEY": s3.secret_key,
        "a wrong AWS_SECRET_ACCESS_KEY": WRONG_S3_SECRET,
        "the token in HTTP_HEADERS": HTTP_TOKEN,
        "a password of URL-reserved characters": RESERVED_PASSWORD,
        "that password percent-encoded": encoded(RESERVED_PASSWORD),
        "a wrong password of URL-reserved characters": WRONG_RESERVED_PASSWORD,
        "that wrong password percent-encoded": encoded(WRONG_RESERVED_PASSWORD),
    }


def fragments(value: str) -> set[str]:
    """The value and its first 14 and last 10 characters: libraries that shorten a long
    value for display (pydantic's `input_value='redis://:redis-pw-ad205f...a7@...'`) still
    show one of those."""
    return {value, value[:14], value[-10:]}


def leaks(text: str, known: dict[str, str]) -> list[str]:
    return [name for name, value in known.items() if any(f in text for f in fragments(value))]


def read_topic(bootstrap: str, topic: str, timeout: float = 60.0) -> list[Any]:
    """Every record of `topic` up to its end offsets at call time."""
    partitions = run_sync(lambda: _partitions(bootstrap, topic), 30.0)
    ends = end_offsets(bootstrap, topic, partitions)

    async def go() -> list[Any]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in partitions]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            got: list[Any] = []
            deadline = time.monotonic() + timeout
            while [tp for tp in tps if await consumer.position(tp) < ends[tp.partition]]:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{topic} not read to {ends} within {timeout}s")
                for messages in (await consumer.getmany(timeout_ms=200)).values():
                    got.extend(messages)
            return got
        finally:
            await consumer.stop()

    return asyncio.run(go())


async def _partitions(bootstrap: str, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sorted(p["partition"] for t in described if t["topic"] == topic for p in t["partitions"])


def dead_letter_texts(broker: SecureKafkaBroker) -> dict[str, str]:
    """Every dead letter on the broker, keys, values and headers, as text per topic."""
    topics = run_sync(lambda: list_topics_async(broker.bootstrap), 30.0)
    texts = {}
    for topic in sorted(t for t in topics if t.endswith(".dlq")):
        parts = []
        for m in read_topic(broker.bootstrap, topic):
            parts.append(repr(m.key) + repr(m.value))
            parts += [f"{k}={v.decode('utf-8', 'replace')}" for k, v in m.headers]
        texts[topic] = "\n".join(parts)
    return texts


@pytest.fixture(scope="module")
def leak_env(
    secure: SecureKafkaBroker,
    redis_with_password: RedisServer,
    s3: S3ProxyServer,
    sink: HttpSink,
) -> dict[str, str]:
    """Everything secret set at once, at DEBUG, as a deployment that carries every
    credential would: each command must keep all of them to itself."""
    secure.grant(USER, ["READ", "WRITE", "CREATE"], topics=["leak-"], prefixed=True)
    secure.grant(USER, ["READ"], groups=["leak-"], prefixed=True)
    return {
        **secure.client_env("SASL_SSL", user=USER, mechanism="SCRAM-SHA-512"),
        "KAFKA_SSL_KEY_PASSWORD": secure.pki.client_key_password,
        "PROTO_DESCRIPTOR_SET": str(EDGE_DESCRIPTORS),
        "TRANSFORMS": "pf_edge",
        "KV_URL": redis_url(redis_with_password, REDIS_PASSWORD),
        **s3.env(BUCKET),
        "S3_FLUSH_INTERVAL_S": "1",
        "HTTP_HEADERS": f"Authorization: Bearer {HTTP_TOKEN}",
        "HTTP_ALLOW_INSECURE_AUTH": "true",  # the test sink speaks plain http on loopback
        "LOG_LEVEL": "DEBUG",
        "BATCH_MAX_WAIT_MS": "200",
        "RETRY_MAX_ATTEMPTS": "2",
        "RETRY_INITIAL_MS": "50",
        "RETRY_MAX_MS": "200",
        "PYTHONPATH": str(ROOT),
    }


def json_lines(events: list[SampleEvent]) -> str:
    return "".join(
        json.dumps(MessageToDict(e.message, preserving_proto_field_name=True)) + "\n"
        for e in events
    )


def test_no_command_prints_or_dead_letters_a_secret(
    secure: SecureKafkaBroker,
    leak_env: dict[str, str],
    events: list[SampleEvent],
    redis_with_password: RedisServer,
    s3: S3ProxyServer,
    sink: HttpSink,
    unique: str,
    tmp_path: Path,
) -> None:
    topic, name = f"leak-in-{unique}", f"leak-{unique}"
    create_topic(secure.bootstrap, topic, partitions=1)
    schemas = {"TOPICS": topic, "TOPIC_SCHEMAS": f"{topic}=edge.v1.ZoneSettingsChanged"}

    def env(connector: str = name, **extra: str) -> dict[str, str]:
        return connector_env(**{**leak_env, **schemas, "CONNECTOR_NAME": connector, **extra})

    path = f"/leak-{unique}"
    rejected_zone = events[0].message.zone_id
    sink.reject_when(
        path, lambda body: rejected_zone.encode() in body, Fault(status=400, body=b"no")
    )
    outputs = [
        run("produce", "produce", topic, "--key-field", "zone_id", env=env(),
            stdin=json_lines(events[:30])),
    ]  # fmt: skip
    produce(secure.bootstrap, topic, [(0, b"poison", POISON)])  # becomes a dead letter
    create_topic(secure.bootstrap, f"leak-replayed-{unique}", partitions=1)  # replay's target
    outputs += [
        run("check kv", "check", env=env(WRITER="kv")),
        run("check s3", "check", env=env(WRITER="s3")),
        run("check http", "check", env=env(WRITER="http", HTTP_URL=sink.url(path))),
        run("run kv", "run", "--until-caught-up", env=env(WRITER="kv")),
        run("kv dump", "kv", "dump", env=env()),
        run("run kv over SASL_PLAINTEXT with PLAIN", "run", "--until-caught-up",
            env=env(f"leak-plain-{unique}", WRITER="kv",
                    **secure.client_env("SASL_PLAINTEXT", user=USER, mechanism="PLAIN"))),
        run("run s3", "run", "--until-caught-up",
            env=env(f"leak-s3-{unique}", WRITER="s3", S3_PREFIX=unique)),
        run("run http", "run", "--until-caught-up",
            env=env(f"leak-http-{unique}", WRITER="http", HTTP_URL=sink.url(path))),
        run("dlq replay", "dlq", "replay", "--to", f"leak-replayed-{unique}", env=env()),
    ]  # fmt: skip
    by_name = {ran.what: ran for ran in outputs}
    assert all(ran.returncode == 0 for ran in outputs), [
        (ran.what, ran.stderr[-2000:]) for ran in outputs if ran.returncode
    ]
    assert "caught up: 31/31 records" in by_name["run kv"].stderr
    assert len(by_name["kv dump"].stdout.splitlines()) > 0
    assert s3.files(BUCKET, unique)
    assert any(
        r.headers.get("authorization") == f"Bearer {HTTP_TOKEN}" for r in sink.received(path)
    )
    assert "replayed 1 dead letters" in by_name["dlq replay"].stderr

    known = known_secrets(secure, s3)
    letters = dead_letter_texts(secure)
    assert {f"{name}.dlq", f"leak-http-{unique}.dlq"} <= set(letters)
    found = {ran.what: leaks(ran.stdout + ran.stderr, known) for ran in outputs}
    found |= {f"dead letters on {t}": leaks(text, known) for t, text in letters.items()}
    assert not {where: names for where, names in found.items() if names}


def test_no_failure_prints_or_dead_letters_a_secret(
    secure: SecureKafkaBroker,
    leak_env: dict[str, str],
    events: list[SampleEvent],
    redis_with_password: RedisServer,
    s3: S3ProxyServer,
    sink: HttpSink,
    unique: str,
) -> None:
    topic, name = f"leak-fail-{unique}", f"leak-fail-{unique}"
    create_topic(secure.bootstrap, topic, partitions=1)
    produce(secure.bootstrap, topic, [(0, e.key, e.value) for e in events[:20]])
    produce(secure.bootstrap, topic, [(0, b"poison", POISON)])
    private = f"private-leak-{unique}"
    create_topic(secure.bootstrap, private, partitions=1)
    schemas = {"TOPICS": topic, "TOPIC_SCHEMAS": f"{topic}=edge.v1.ZoneSettingsChanged"}

    def env(connector: str = name, **extra: str) -> dict[str, str]:
        return connector_env(**{**leak_env, **schemas, "CONNECTOR_NAME": connector, **extra})

    wrong_kafka = {"KAFKA_SASL_PASSWORD": WRONG_KAFKA_PASSWORD}
    wrong_redis = {"KV_URL": redis_url(redis_with_password, WRONG_REDIS_PASSWORD)}
    path = f"/leak-fail-{unique}"
    # A receiver that echoes the credential it refuses, as many APIs do.
    sink.reject_when(
        path, lambda body: True, Fault(status=401, body=f"bad token Bearer {HTTP_TOKEN}".encode())
    )
    bad_port = f"redis://:{REDIS_PASSWORD}@127.0.0.1:notaport/0"
    outputs = [
        (2, run("config error in KV_URL", "check", env=env(KV_URL=bad_port))),
        (2, run("config error in HTTP_HEADERS", "check",
                env=env(WRITER="http", HTTP_URL=sink.url(path),
                        HTTP_HEADERS=f"Authorization Bearer {HTTP_TOKEN}"))),
        (2, run("config error next to secrets", "run", env=env(BATCH_MAX_MESSAGES="ten"))),
        (1, run("wrong Kafka password", "run", "--until-caught-up", env=env(**wrong_kafka))),
        (1, run("unknown CA", "run", "--until-caught-up",
                env=env(KAFKA_SSL_CAFILE=str(secure.pki.other_ca_file)))),
        (1, run("no READ on the topic", "run", "--until-caught-up",
                env=env(TOPICS=private, TOPIC_SCHEMAS=f"{private}=bytes"))),
        (1, run("no WRITE on the dead-letter topic", "run", "--until-caught-up",
                env=env(f"ok-leak-{unique}"))),
        (1, run("wrong redis password", "run", "--until-caught-up", env=env(**wrong_redis))),
        (1, run("kv dump, wrong redis password", "kv", "dump", env=env(**wrong_redis))),
        (1, run("wrong S3 secret", "run", "--until-caught-up",
                env=env(f"leak-s3f-{unique}", WRITER="s3", S3_PREFIX=unique,
                        AWS_SECRET_ACCESS_KEY=WRONG_S3_SECRET))),
        (1, run("HTTP 401 echoing the token", "run", "--until-caught-up",
                env=env(f"leak-httpf-{unique}", WRITER="http", HTTP_URL=sink.url(path)))),
        (1, run("produce, wrong Kafka password", "produce", topic, env=env(**wrong_kafka),
                stdin=json_lines(events[:3]))),
        (1, run("dlq replay, wrong Kafka password", "dlq", "replay", env=env(**wrong_kafka))),
    ]  # fmt: skip
    known = known_secrets(secure, s3)
    found = {ran.what: leaks(ran.stdout + ran.stderr, known) for _, ran in outputs}
    found |= {
        f"dead letters on {t}": leaks(text, known) for t, text in dead_letter_texts(secure).items()
    }
    assert not {where: names for where, names in found.items() if names}
    # Each path must have been taken: a configuration error exits 2 and nothing else; a
    # failure at run time anything but 0 (its exact code and line are tested above, and
    # not every command converts every client error yet).
    unexpected = [
        (ran.what, code, ran.returncode, ran.stderr[-1500:])
        for code, ran in outputs
        if (ran.returncode != 2 if code == 2 else ran.returncode == 0)
    ]
    assert not unexpected


def test_passwords_of_url_reserved_characters_are_never_printed(
    secure: SecureKafkaBroker,
    leak_env: dict[str, str],
    events: list[SampleEvent],
    redis_with_reserved_password: RedisServer,
    s3: S3ProxyServer,
    sink: HttpSink,
    unique: str,
) -> None:
    """Passwords holding every character a URL reserves, in KV_URL and HTTP_URL: written
    as is (a URL parser then ends the host part at '/', '?' or '#'), they are a config
    error that shows the URL masked; percent-encoded, they work and are never shown."""
    topic, name = f"leak-rsv-{unique}", f"leak-rsv-{unique}"
    create_topic(secure.bootstrap, topic, partitions=1)
    produce(secure.bootstrap, topic, [(0, e.key, e.value) for e in events[:20]])
    schemas = {"TOPICS": topic, "TOPIC_SCHEMAS": f"{topic}=edge.v1.ZoneSettingsChanged"}

    def env(connector: str = name, **extra: str) -> dict[str, str]:
        return connector_env(**{**leak_env, **schemas, "CONNECTOR_NAME": connector, **extra})

    server = redis_with_reserved_password
    kv_raw = redis_url(server, RESERVED_PASSWORD)
    kv_encoded = redis_url(server, encoded(RESERVED_PASSWORD))
    kv_wrong = redis_url(server, encoded(WRONG_RESERVED_PASSWORD))
    path = f"/leak-rsv-{unique}"
    http_raw = sink.url(path).replace("http://", f"http://svc:{RESERVED_PASSWORD}@")
    http_encoded = sink.url(path).replace("http://", f"http://svc:{encoded(RESERVED_PASSWORD)}@")
    outputs = [
        (2, run("check, KV_URL as is", "check", env=env(KV_URL=kv_raw))),
        (2, run("run, KV_URL as is", "run", "--until-caught-up", env=env(KV_URL=kv_raw))),
        (0, run("check, KV_URL encoded", "check", env=env(KV_URL=kv_encoded))),
        (0, run("run, KV_URL encoded", "run", "--until-caught-up", env=env(KV_URL=kv_encoded))),
        (0, run("kv dump, KV_URL encoded", "kv", "dump", env=env(KV_URL=kv_encoded))),
        (1, run("run, wrong password encoded", "run", "--until-caught-up",
                env=env(f"{name}-wrong", KV_URL=kv_wrong))),
        (2, run("check, HTTP_URL as is", "check", env=env(WRITER="http", HTTP_URL=http_raw))),
        (2, run("run, HTTP_URL as is", "run", "--until-caught-up",
                env=env(f"{name}-http", WRITER="http", HTTP_URL=http_raw))),
        (0, run("check, HTTP_URL encoded", "check",
                env=env(WRITER="http", HTTP_URL=http_encoded))),
        (0, run("run, HTTP_URL encoded", "run", "--until-caught-up",
                env=env(f"{name}-http", WRITER="http", HTTP_URL=http_encoded))),
    ]  # fmt: skip
    known = known_secrets(secure, s3)
    found = {ran.what: leaks(ran.stdout + ran.stderr, known) for _, ran in outputs}
    assert not {where: names for where, names in found.items() if names}
    unexpected = [
        (ran.what, code, ran.returncode, ran.stderr[-1500:])
        for code, ran in outputs
        if ran.returncode != code
    ]
    assert not unexpected
    by_name = {ran.what: ran for _, ran in outputs}
    for what in ("check, KV_URL as is", "run, KV_URL as is"):
        assert by_name[what].lines == [
            f"config error: KV_URL='redis://:*****@127.0.0.1:{server.port}/0': a redis URL "
            "needs a host (percent-encode '/', '?' and '#' in the password: %2F, %3F, %23); "
            "expected lmdb:PATH (embedded) or redis://[:password@]host:port/db"
        ]
    for what in ("check, HTTP_URL as is", "run, HTTP_URL as is"):
        (line,) = by_name[what].lines
        assert line.startswith(f"config error: HTTP_URL='http://svc:*****@127.0.0.1:{sink.port}")
    assert (
        f"KV_URL=redis://:*****@127.0.0.1:{server.port}/0"
        in by_name["check, KV_URL encoded"].stdout
    )

    # The encoded passwords did authenticate: everything is stored, and the sink was sent
    # the password itself.
    client = redis.Redis(host="127.0.0.1", port=server.port, password=RESERVED_PASSWORD)
    try:
        stored = {key: client.get(key) for key in expected_store(events[:20])}
    finally:
        client.close()
    assert stored == expected_store(events[:20])
    assert "caught up: 20/20 records" in by_name["run, HTTP_URL encoded"].stderr
    credentials = f"svc:{RESERVED_PASSWORD}".encode()
    assert {r.headers.get("authorization") for r in sink.received(path)} == {
        f"Basic {base64.b64encode(credentials).decode()}"
    }

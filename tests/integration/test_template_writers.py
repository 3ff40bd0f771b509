"""`connector new` for each writer: the generated repository passes its own `make test` in
the runtime's venv untouched, and its `make demo` puts the sample events into the sink the
writer names: a real HTTP receiver, the S3 server, a Kafka output topic (the KV writer is
`test_template.py`'s). Only the variables that point at the local servers are overridden,
on `make`'s command line, as the generated README says.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.config.schemas import find_message_class, load_descriptor_set
from harness.http_sink import HttpSink
from harness.kafka import KafkaBroker, create_topic, run_sync
from harness.s3 import S3ProxyServer
from tests.integration.test_template import base_env, run
from tests.integration.test_writer_kafka import read_topic

pytestmark = pytest.mark.integration

#: The samples of the template: five entities, one deleted, one event without id.
KEYS = {"1", "2", "3", "4", "5"}


@pytest.fixture(scope="module")
def runtime_venv() -> Path:
    """The runtime's own venv, as the README's "make test in the runtime's venv" means."""
    from tests.conftest import ROOT

    return ROOT / ".venv"


@pytest.fixture(scope="module")
def sink() -> Iterator[HttpSink]:
    with HttpSink() as server:
        yield server


@pytest.fixture(scope="module")
def s3() -> Iterator[S3ProxyServer]:
    with S3ProxyServer() as server:
        server.create_bucket("generated")
        yield server


def generate(venv: Path, out: Path, writer: str, name: str, topic: str) -> Path:
    env = base_env(venv)
    answers = [f"connector_name={name}", f"topics={topic}", f"writer={writer}"]
    created = run(
        [str(venv / "bin" / "connector"), "new", "--no-input", "--output-dir", str(out), *answers],
        env=env,
        timeout=60,
    )
    repo = Path(created.stdout.strip().splitlines()[-1])
    requirement = (repo / "runtime-requirement.txt").read_text()
    assert "kafka-connectors" in requirement.splitlines()[-1], requirement
    tested = run(
        ["make", "-C", str(repo), "test", f"PYTHON={venv / 'bin' / 'python'}"], env=env, timeout=300
    )
    assert " passed" in tested.stdout and "failed" not in tested.stdout, tested.stdout
    return repo


def demo(venv: Path, repo: Path, kafka: KafkaBroker, topic: str, **overrides: str) -> None:
    create_topic(kafka.bootstrap, topic, partitions=2, exist_ok=True)
    settings = [f"{name}={value}" for name, value in overrides.items()]
    command = ["make", "-C", str(repo), "demo", f"KAFKA_BOOTSTRAP_SERVERS={kafka.bootstrap}"]
    command += ["METRICS_PORT=0", "DLQ_CREATE=true", f"PYTHON={venv / 'bin' / 'python'}"]
    run([*command, *settings], env=base_env(venv), timeout=300)


def test_the_http_repository_sends_documents_to_the_receiver(
    runtime_venv: Path, kafka: KafkaBroker, sink: HttpSink, unique: str, tmp_path: Path
) -> None:
    topic = f"gen-http-{unique}.v1"
    repo = generate(runtime_venv, tmp_path, "http", f"gen-http-{unique}", topic)
    demo(runtime_venv, repo, kafka, topic, HTTP_URL=sink.url("/contacts"), HTTP_VERIFY_TLS="false")

    documents = [doc for got in sink.accepted("/contacts") for doc in got.documents()]
    by_id = {doc["id"]: doc for doc in documents}
    assert set(by_id) == KEYS, documents
    assert by_id["4"]["deleted"] is True and by_id["1"]["deleted"] is False
    assert by_id["1"]["attributes"] == {"region": "eu-1", "tier": "gold"}
    assert not [doc for doc in documents if "key_b64" in doc], "no raw deletion envelopes"


def test_the_s3_repository_writes_json_lines_to_the_bucket(
    runtime_venv: Path, kafka: KafkaBroker, s3: S3ProxyServer, unique: str, tmp_path: Path
) -> None:
    topic = f"gen-s3-{unique}.v1"
    name = f"gen-s3-{unique}"
    repo = generate(runtime_venv, tmp_path, "s3", name, topic)
    demo(
        runtime_venv, repo, kafka, topic, **s3.env("generated"), S3_PREFIX=name,
        S3_FLUSH_INTERVAL_S="1",
    )  # fmt: skip

    objects = s3.files("generated", name)
    assert objects, "no object written"
    lines = [
        json.loads(line)
        for body in objects.values()
        for line in gzip.decompress(body).decode().splitlines()
    ]
    ids = [line["id"] for line in lines]
    assert set(ids) == KEYS and len(ids) >= len(KEYS), lines


def test_the_kafka_repository_produces_its_output_type(
    runtime_venv: Path, kafka: KafkaBroker, unique: str, tmp_path: Path
) -> None:
    topic = f"gen-kafka-{unique}.v1"
    name = f"gen-kafka-{unique}"
    repo = generate(runtime_venv, tmp_path, "kafka", name, topic)
    output = f"{name}.out"
    create_topic(kafka.bootstrap, output, partitions=2)
    demo(runtime_venv, repo, kafka, topic, KAFKA_OUTPUT_TOPIC=output)

    package = name.replace("-", "_")
    pool = load_descriptor_set(repo / "src" / package / "schema.binpb")
    view = find_message_class(f"{package}.v1.EventView", (pool,))
    assert view is not None
    records = run_sync(lambda: read_topic(kafka.bootstrap, output, count=2), timeout=60)
    values = {r.key.decode(): r.value for r in records if r.key is not None}
    assert set(values) == {f"event:{k}" for k in KEYS}
    assert values["event:4"] is None, "the deleted entity is a tombstone"
    assert view.FromString(values["event:1"]).attributes == {"region": "eu-1", "tier": "gold"}

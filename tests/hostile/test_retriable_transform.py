"""A transform whose dependency is down (it raises RetriableError) against `connector run`
on a real broker:

- the record is retried with the runner's backoff, one WARNING per attempt, nothing
  committed and nothing dead-lettered while it fails; once the dependency is back every
  record is stored and everything committed;
- with RETRY_MAX_ATTEMPTS=2 the connector stops (exit 1, one fatal line naming the
  transform and the record) with nothing committed and nothing dead-lettered.
"""

from __future__ import annotations

from pathlib import Path

from harness.kafka import KafkaBroker
from harness.kcat import end_offsets
from tests.conftest import ROOT, connector_env, run_connector
from tests.hostile.test_shutdown import Running
from tests.hostile.test_transforms import COUNT, committed, load_topic, stored_by_hostile
from tests.integration.test_runner_kafka import read_lmdb
from tests.waiting import wait_for

FLAKY_MODULE = """
import os
from pathlib import Path

from connectors import Put, RetriableError, transform


@transform("flaky")
def flaky(message, ctx):
    if ctx.key == b"k7":
        directory = Path(os.environ["FLAKY_DIR"])
        with open(directory / "attempts", "a") as attempts:
            attempts.write("attempt\\n")
        if not (directory / "back").exists():
            raise RetriableError("template registry answered 503")
    return Put(ctx.key, message.upper())
"""

BAD = 7


def flaky_env(kafka: KafkaBroker, name: str, topic: str, tmp: Path, **extra: str) -> dict[str, str]:
    modules = tmp / "modules"
    modules.mkdir(exist_ok=True)
    module = f"flaky_{name.replace('-', '_')}"
    (modules / f"{module}.py").write_text(FLAKY_MODULE)
    return connector_env(
        CONNECTOR_NAME=name,
        TOPICS=topic,
        TOPIC_SCHEMAS=f"{topic}=bytes",
        KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap,
        KV_URL=f"lmdb:{tmp / 'kv'}",
        KV_SYNC="false",
        TRANSFORM_MODULES=module,
        TRANSFORMS="flaky",
        RETRY_INITIAL_MS="50",
        RETRY_MAX_MS="200",
        FLAKY_DIR=str(tmp),
        PYTHONPATH=f"{ROOT}:{modules}",
        **extra,
    )


def attempts(tmp: Path) -> int:
    path = tmp / "attempts"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_retriable_transform_is_retried_until_its_dependency_is_back(
    kafka: KafkaBroker, unique: str, tmp_path: Path
) -> None:
    name = f"retriable-{unique}"
    topic = load_topic(kafka, name, {})
    running = Running(flaky_env(kafka, name, topic, tmp_path), "--until-caught-up")
    try:
        wait_for(lambda: attempts(tmp_path) >= 3, timeout=60, what="three attempts")
        wait_for(lambda: running.count("transform failed (attempt 2)"), timeout=30, what="a retry")
        assert committed(kafka, name, topic) is None, "nothing committed while it retries"
        (tmp_path / "back").touch()
        code = running.wait(timeout=120)
    finally:
        running.close()
    assert code == 0, running.stderr[-3000:]
    assert "Traceback" not in running.stderr, running.stderr[-3000:]
    retries = [line for line in running.lines if "transform failed (attempt" in line]
    assert len(retries) == attempts(tmp_path) - 1, retries
    assert all("WARNING" in line and f"{topic}[0]@{BAD}" in line for line in retries), retries
    assert read_lmdb(tmp_path / "kv") == stored_by_hostile(range(COUNT))
    assert end_offsets(kafka.bootstrap, f"{name}.dlq", [0]) == {0: 0}, "nothing dead-lettered"
    assert committed(kafka, name, topic) == COUNT


def test_retries_exhausted_stop_with_nothing_committed_or_dead_lettered(
    kafka: KafkaBroker, unique: str, tmp_path: Path
) -> None:
    name = f"retriable-max-{unique}"
    topic = load_topic(kafka, name, {})
    env = flaky_env(kafka, name, topic, tmp_path, RETRY_MAX_ATTEMPTS="2")
    stopped = run_connector("run", "--until-caught-up", env=env, timeout=120)
    assert stopped.returncode == 1, stopped.stderr[-3000:]
    fatal = [line for line in stopped.stderr.splitlines() if line.startswith("fatal:")]
    assert len(fatal) == 1, stopped.stderr[-3000:]
    assert f"transform:flaky at {topic}[0]@{BAD}" in fatal[0], fatal
    assert "Traceback" not in stopped.stderr, stopped.stderr[-3000:]
    assert attempts(tmp_path) == 2
    assert committed(kafka, name, topic) is None, "nothing committed"
    assert read_lmdb(tmp_path / "kv") == {}, "nothing written"
    assert end_offsets(kafka.bootstrap, f"{name}.dlq", [0]) == {0: 0}, "nothing dead-lettered"

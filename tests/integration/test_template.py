"""`connector new` makes a repository that builds, tests, lints and runs against a real broker.

What a team does after `connector new`, done here in a fresh venv where the runtime is
installed from this checkout (not editable, so the template must travel inside the
installed package): build the descriptor set, install the generated package, run its own
tests, feed it records produced by kcat (an independent client) and read the transform's
output back from the KV with `connector kv dump`. Around that: the README's three commands,
the generated alert rules under promtool, the generated `.proto` under buf, and the runnable
examples of `docs/patterns.md` under `connector check`.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.cli.new import generate, template_dir
from connectors.config.schemas import find_message_class, load_descriptor_set
from connectors.core.errors import ConfigError, FatalError
from connectors.observability import metrics
from harness.kafka import KafkaBroker, create_topic
from harness.kcat import produce
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

INSTALL_TIMEOUT = 300.0


def run(
    cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure, fail the test with its output (nothing is hidden)."""
    done = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        pytest.fail(
            f"{' '.join(cmd)} exited {done.returncode}\n--- stdout\n{done.stdout[-6000:]}"
            f"\n--- stderr\n{done.stderr[-6000:]}"
        )
    return done


def base_env(venv: Path) -> dict[str, str]:
    """A clean environment whose `python3`, `pip` and `connector` are the fresh venv's."""
    keep = {k: v for k, v in os.environ.items() if k in ("HOME", "LANG", "TMPDIR")}
    keep["PATH"] = f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"
    keep["VIRTUAL_ENV"] = str(venv)
    keep["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return keep


def env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value
    return values


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the runtime as a team gets it: `pip install '<checkout>[new]'`.

    The venv is made without pip and this interpreter's pip installs into it (pip included,
    for the generated Makefile), which skips ensurepip; pip reuses its wheel and HTTP
    caches, so only the first run on a machine downloads.
    """
    path = tmp_path_factory.mktemp("runtime") / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(path)], timeout=120)
    target = ["--python", str(path / "bin" / "python")]
    install = [sys.executable, "-m", "pip", *target, "install", "--no-compile", "pip"]
    run([*install, f"{ROOT}[new]"], env=base_env(path), timeout=INSTALL_TIMEOUT)
    return path


@pytest.fixture(scope="module")
def suffix() -> str:
    return os.urandom(4).hex()


@dataclass(frozen=True)
class Readme:
    repo: Path
    dump: str
    installed_by_demo: bool


@pytest.fixture(scope="module")
def readme(venv: Path, kafka: KafkaBroker, tmp_path_factory: pytest.TempPathFactory) -> Readme:
    """The runtime README's three commands, as written, with the test's broker.

    The metrics port is turned off so that a busy port 9464 on the machine cannot interfere.
    The demo installs nothing: the transform is loaded from the repository's `src/`.
    """
    out = tmp_path_factory.mktemp("generated")
    env = base_env(venv)
    new = ["connector", "new", "--no-input", "--output-dir", str(out)]
    answers = ["connector_name=zone-audit", "topics=zone-events.v1"]
    created = run(
        [*new, *answers, "protobuf_message=acme.zones.v1.ZoneChanged"], env=env, timeout=60
    )
    repo = Path(created.stdout.strip().splitlines()[-1])
    assert repo == out / "zone-audit"
    # The test's broker, as production clusters, creates no topic by itself: the input
    # topic is created by its owner, the dead-letter topic by the connector when told to.
    create_topic(kafka.bootstrap, "zone-events.v1", partitions=3, exist_ok=True)
    demo = ["make", "-C", str(repo), "demo", f"KAFKA_BOOTSTRAP_SERVERS={kafka.bootstrap}"]
    run([*demo, "METRICS_PORT=0", "DLQ_CREATE=true"], env=env, timeout=300)
    dumped = run(["make", "-s", "-C", str(repo), "dump"], env=env, timeout=60)
    probe = "import importlib.metadata as m; print([d.name for d in m.distributions()])"
    listed = run([str(venv / "bin" / "python"), "-c", probe], cwd=venv, timeout=30).stdout
    return Readme(repo, dumped.stdout, installed_by_demo="zone-audit" in listed)


@pytest.fixture(scope="module")
def repo(readme: Readme, venv: Path) -> Path:
    """The README's repository, installed in the venv as its team would for its tests."""
    python = str(venv / "bin" / "python")
    run(["make", "install", f"PYTHON={python}"], cwd=readme.repo, env=base_env(venv), timeout=300)
    return readme.repo


def test_the_installed_runtime_carries_the_whole_template(venv: Path) -> None:
    where = "import connectors.cli.new as s; print(s.template_dir())"
    python = str(venv / "bin" / "python")
    installed = Path(run([python, "-c", where], cwd=venv, timeout=30).stdout.strip())
    assert str(installed).startswith(str(venv)), "the template must come from the wheel"
    source = template_dir()

    def files(root: Path) -> set[str]:
        return {
            str(p.relative_to(root))
            for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }

    assert files(installed) == files(source)


def test_the_generated_repository_passes_its_own_tests(venv: Path, repo: Path) -> None:
    done = run(
        ["make", "test", f"PYTHON={venv / 'bin' / 'python'}"],
        cwd=repo,
        env=base_env(venv),
        timeout=120,
    )

    tests = repo.glob("tests/test_*.py")
    written = sum(len(re.findall(r"^def test_", t.read_text(), re.M)) for t in tests)
    assert written >= 7
    assert re.search(rf"\b{written} passed\b", done.stdout), done.stdout


def test_the_generated_connector_writes_its_transform_output_to_the_kv(
    venv: Path, repo: Path, kafka: KafkaBroker, suffix: str, tmp_path: Path
) -> None:
    """kcat input on a topic of its own, through the installed package, into a fresh KV."""
    topic = f"zone-events-{suffix}.v1"
    pool = load_descriptor_set(repo / "src" / "zone_audit" / "schema.binpb")
    event = find_message_class("acme.zones.v1.ZoneChanged", (pool,))
    view = find_message_class("acme.zones.v1.ZoneChangedView", (pool,))
    assert event is not None and view is not None
    create_topic(kafka.bootstrap, topic, partitions=3)
    records = [  # updates of one id stay in one partition, so their order holds
        (0, b"a1", event(id="a1", name=" First ", attributes={" Colour ": " Blue "}, tags=["X"])),
        (1, b"b2", event(id="b2", name="Second", version=1, attributes={"tier": "silver"})),
        (2, b"c3", event(id="c3", name="Gone soon", version=1)),
        (0, b"", event(name="without id")),
        (1, b"b2", event(id="b2", name="Second", version=2, attributes={"tier": "gold"})),
        (2, b"c3", event(id="c3", version=2, deleted=True)),
        (1, b"d4", event(id=" d4 ", tags=["b", "A", "a"], updated_at_ms=1_700_000_000_000)),
    ]
    produce(kafka.bootstrap, topic, [(p, k, m.SerializeToString()) for p, k, m in records])

    env = base_env(venv)
    env.update(env_file(repo / ".env.example"))
    env.update(
        CONNECTOR_NAME=f"zone-audit-{suffix}",
        KAFKA_GROUP_ID=f"zone-audit-{suffix}",
        TOPICS=topic,
        TOPIC_SCHEMAS=f"{topic}=acme.zones.v1.ZoneChanged",
        KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap,
        KV_URL=f"lmdb:{tmp_path / 'kv'}",
        METRICS_PORT="0",
        DLQ_CREATE="true",  # the test's broker creates no topic by itself
    )
    assert env["TRANSFORMS"] == "zone_audit" and not env["TRANSFORM_MODULES"], "by entry point"
    connector = str(venv / "bin" / "connector")
    ran = run([connector, "run", "--until-caught-up"], cwd=repo, env=env, timeout=120)
    assert "caught up: 7/7 records" in ran.stderr
    dumped = run(
        [connector, "kv", "dump", "--type", "acme.zones.v1.ZoneChangedView"],
        cwd=repo,
        env=env,
        timeout=60,
    )

    rows = [json.loads(line) for line in dumped.stdout.splitlines()]
    stored = {row["key"]: view.FromString(base64.b64decode(row["value_b64"])) for row in rows}
    assert stored == {
        "zone_changed:a1": view(id="a1", name="First", attributes={"colour": "Blue"}, tags=["x"]),
        "zone_changed:b2": view(id="b2", name="Second", version=2, attributes={"tier": "gold"}),
        "zone_changed:d4": view(id="d4", tags=["a", "b"], updated_at_ms=1_700_000_000_000),
    }
    assert rows[0]["value"]["attributes"] == {"colour": "Blue"}  # decoded with --type


def test_the_readme_commands_go_from_new_to_entries_in_the_kv(readme: Readme) -> None:
    rows = {
        row["key"]: row["value"]
        for row in (json.loads(line) for line in readme.dump.splitlines() if line.startswith("{"))
    }

    assert sorted(rows) == [
        "zone_changed:1",
        "zone_changed:2",
        "zone_changed:3",
        "zone_changed:5",
    ], "4 was deleted; the event without id was dropped"
    assert rows["zone_changed:2"]["version"] == "2"
    assert rows["zone_changed:1"]["attributes"] == {"region": "eu-1", "tier": "gold"}
    assert rows["zone_changed:5"]["tags"] == ["echo"]
    assert rows["zone_changed:1"]["name"] == "Alpha"
    assert not readme.installed_by_demo, "the demo must leave the runtime's venv as it was"


def _exported_series() -> set[str]:
    """Every series name the runtime can export, suffixes included (`_total`, `_bucket`...)."""
    names: set[str] = set()
    for family in metrics.REGISTRY.collect():
        names.add(family.name)
        kind = family.type
        if kind == "counter":
            names.update({f"{family.name}_total", f"{family.name}_created"})
        elif kind == "histogram":
            names.update(f"{family.name}_{s}" for s in ("bucket", "sum", "count", "created"))
        elif kind == "info":
            names.add(f"{family.name}_info")
    return names


def test_the_alert_rules_pass_promtool_and_name_only_exported_metrics(repo: Path) -> None:
    rules = next((repo / "alerts").glob("*.rules.yml"))
    run(["promtool", "check", "rules", str(rules)], timeout=60)
    run(["promtool", "test", "rules", str(next((repo / "alerts").glob("*.test.yml")))], timeout=60)

    exported = _exported_series()
    groups = yaml.safe_load(rules.read_text())["groups"]
    exprs = [rule["expr"] for group in groups for rule in group["rules"]]
    used = {name for expr in exprs for name in re.findall(r"\b(connector_[a-z_]+)\b", expr)}
    assert used, exprs
    assert used <= exported, (
        f"not exported by connectors.observability.metrics: {sorted(used - exported)}"
    )


@pytest.fixture(scope="module")
def buf(repo: Path) -> Path:
    """buf from the npm registry, as the generated CI installs it (its package.json)."""
    run(["npm", "install", "--no-audit", "--no-fund"], cwd=repo, timeout=300)
    return repo / "node_modules" / ".bin" / "buf"


def test_the_proto_passes_buf_lint_and_a_breaking_change_is_refused(repo: Path, buf: Path) -> None:
    run([str(buf), "lint"], cwd=repo, timeout=120)
    run([str(buf), "build"], cwd=repo, timeout=120)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    run([*git, "init", "-q", "-b", "main"], cwd=repo, timeout=30)
    run([*git, "add", "-A"], cwd=repo, timeout=30)
    run([*git, "commit", "-q", "-m", "generated"], cwd=repo, timeout=30)
    proto = next((repo / "proto").rglob("*.proto"))
    original = proto.read_text()

    proto.write_text(original.replace("uint64 version = 5;", "string version = 5;", 1))
    broken = subprocess.run(
        [str(buf), "breaking", "--against", ".git#branch=main"],
        cwd=repo, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    proto.write_text(original.replace("bool deleted = 7;", "bool deleted = 7;\n  string x = 9;"))
    added = subprocess.run(
        [str(buf), "breaking", "--against", ".git#branch=main"],
        cwd=repo, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    proto.write_text(original)

    assert broken.returncode != 0
    assert 'changed type from "uint64" to "string"' in broken.stdout + broken.stderr
    assert added.returncode == 0, added.stdout + added.stderr


# ------------------------------------------------------------------ `connector new` itself


@pytest.fixture
def replay_config(tmp_path: Path) -> Iterator[Path]:
    """A cookiecutter user config that keeps its replay files out of the home directory."""
    config = tmp_path / "cookiecutter.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "replay_dir": str(tmp_path / "replay"),
                "cookiecutters_dir": str(tmp_path / "cookiecutters"),
            }
        )
    )
    yield config


def test_bad_answers_are_refused_with_every_reason(
    tmp_path: Path, replay_config: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    answers = {"connector_name": "Bad_Name", "protobuf_message": "nover.Event", "topics": "a b"}
    out = tmp_path / "out"
    out.mkdir()

    with pytest.raises(ConfigError):
        generate(answers, out, no_input=True, config_file=replay_config)

    err = capfd.readouterr().err
    assert "connector_name='Bad_Name'" in err
    assert "protobuf_message='nover.Event'" in err
    assert "topics='a b'" in err
    assert list(out.iterdir()) == [], "nothing generated"


def test_an_existing_directory_is_not_overwritten(tmp_path: Path, replay_config: Path) -> None:
    generate({"connector_name": "twice"}, tmp_path, no_input=True, config_file=replay_config)
    marker = tmp_path / "twice" / "src" / "twice" / "transform.py"
    marker.write_text("# edited by the team\n")

    with pytest.raises(FatalError, match="already exists"):
        generate({"connector_name": "twice"}, tmp_path, no_input=True, config_file=replay_config)

    assert marker.read_text() == "# edited by the team\n"


# --------------------------------------------------------------------- docs/patterns.md


def _env_blocks() -> list[tuple[str, dict[str, str]]]:
    """The ```env blocks of docs/patterns.md: each one a complete connector environment."""
    text = (ROOT / "docs" / "patterns.md").read_text()
    blocks = []
    for match in re.finditer(r"```env\n(.*?)```", text, re.S):
        values: dict[str, Any] = {}
        for line in match.group(1).splitlines():
            if line.strip() and not line.startswith("#"):
                name, _, value = line.partition("=")
                values[name.strip()] = value.strip()
        blocks.append((values.get("CONNECTOR_NAME", "?"), values))
    return blocks


def test_the_patterns_examples_are_configurations_the_runtime_accepts() -> None:
    blocks = _env_blocks()
    assert len(blocks) >= 4

    for name, values in blocks:
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
        env.update(values)
        done = subprocess.run(
            [sys.executable, "-m", "connectors.cli", "check"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"{name}: {done.stderr}"

"""The runtime's Dockerfile, checked against the project without a Docker engine.

No engine runs here, so the Dockerfile is parsed (dockerfile-parse) and every claim it
makes about the project is checked against the project itself: the files it copies exist
and survive `.dockerignore`, the packages it installs are all of the packages
`pyproject.toml` builds, the extras it names exist, and the entrypoint, port, user and
health check agree with the runtime's code and the Kubernetes manifests.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from connectors.cli.new import generate
from connectors.config.settings import RuntimeSettings
from tests.conftest import ROOT

DOCKERFILE = ROOT / "Dockerfile"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
METRICS_PORT = RuntimeSettings.model_fields["metrics_port"].default


@dataclass
class Stage:
    name: str | None
    base: str
    instructions: list[dict[str, Any]] = field(default_factory=list)

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [i for i in self.instructions if i["instruction"] == kind]

    def last(self, kind: str) -> str:
        found = self.all(kind)
        assert found, f"stage {self.name or self.base} has no {kind}"
        return str(found[-1]["value"])


@pytest.fixture(scope="module")
def parser() -> DockerfileParser:
    return DockerfileParser(path=str(DOCKERFILE))


@pytest.fixture(scope="module")
def stages(parser: DockerfileParser) -> list[Stage]:
    return parse_stages(parser)


def parse_stages(parser: DockerfileParser) -> list[Stage]:
    args = {}
    result: list[Stage] = []
    for instruction in parser.structure:
        kind, value = instruction["instruction"], instruction["value"]
        if kind == "ARG" and not result:
            name, _, default = value.partition("=")
            args[name] = default
        elif kind == "FROM":
            words = value.split()
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m[1] or m[2]], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            result.append(Stage(name, base))
        elif result:
            result[-1].instructions.append(instruction)
    return result


def _json_form(value: str) -> list[str]:
    parsed = json.loads(value)
    assert isinstance(parsed, list), f"{value!r} is not the exec (JSON) form"
    return [str(item) for item in parsed]


def _copies(stage: Stage) -> list[tuple[list[str], str, str | None]]:
    """(sources, destination, --from stage) of each COPY of a stage."""
    result = []
    for instruction in stage.all("COPY"):
        words = shlex.split(instruction["value"])
        origin = None
        flags = [w for w in words if w.startswith("--")]
        for flag in flags:
            if flag.startswith("--from="):
                origin = flag.removeprefix("--from=")
        paths = [w for w in words if not w.startswith("--")]
        result.append((paths[:-1], paths[-1], origin))
    return result


def _ignored(path: str, root: Path = ROOT) -> bool:
    """Whether `.dockerignore` keeps `path` out of the build context (last match wins)."""
    excluded = False
    for raw in (root / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.removeprefix("!").rstrip("/")
        parts = PurePosixPath(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes):
            excluded = not negate
    return excluded


def test_build_and_runtime_are_separate_slim_python_311_stages(
    parser: DockerfileParser, stages: list[Stage]
) -> None:
    assert parser.is_multistage
    assert len(stages) >= 2
    for stage in stages:
        assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", stage.base), stage.base
    build, final = stages[0], stages[-1]
    assert build.name == "build"
    assert [origin for _, _, origin in _copies(final)] == ["build"], "only the venv crosses over"
    assert not any("pip install" in i["value"] for i in final.all("RUN"))


def test_the_image_runs_as_a_numeric_non_root_user(stages: list[Stage]) -> None:
    user = stages[-1].last("USER")
    uid, _, gid = user.partition(":")

    assert uid.isdigit() and int(uid) > 0, f"USER {user}: numeric so runAsNonRoot can check it"
    assert gid.isdigit() and int(gid) > 0
    creates = " ".join(i["value"] for i in stages[-1].all("RUN"))
    assert f"--uid {uid}" in creates and f"--gid {gid}" in creates


def test_the_entrypoint_is_connector_run(stages: list[Stage]) -> None:
    final = stages[-1]

    assert _json_form(final.last("ENTRYPOINT")) == ["connector"]
    assert _json_form(final.last("CMD")) == ["run"]
    assert PYPROJECT["project"]["scripts"]["connector"] == "connectors.cli:console"
    assert "/opt/connector/bin" in final.last("ENV"), "the venv's `connector` is on PATH"


def test_the_port_and_health_check_are_the_runtimes(stages: list[Stage]) -> None:
    final = stages[-1]
    healthcheck = final.last("HEALTHCHECK")

    assert METRICS_PORT == 9464
    assert final.last("EXPOSE").split() == [str(METRICS_PORT)]
    assert f"METRICS_PORT={METRICS_PORT}" in final.last("ENV")
    assert "/livez" in healthcheck
    assert str(METRICS_PORT) in healthcheck
    command = _json_form(healthcheck[healthcheck.index("CMD") + 3 :].strip())
    assert command[:2] == ["python", "-c"]
    compile(command[2], "<HEALTHCHECK>", "exec")


def test_every_copied_path_exists_and_is_in_the_build_context(stages: list[Stage]) -> None:
    copied = 0
    for stage in stages:
        for sources, _, origin in _copies(stage):
            if origin is not None:
                assert origin in {s.name for s in stages}, f"COPY --from={origin}: no such stage"
                continue
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
                assert not _ignored(source.rstrip("/")), f"COPY {source}: .dockerignore drops it"
                copied += 1
    assert copied >= 5


def test_pip_installs_what_was_copied_with_extras_that_exist(stages: list[Stage]) -> None:
    build = stages[0]
    copied = {
        PurePosixPath(source.rstrip("/")).name
        for sources, _, origin in _copies(build)
        if origin is None
        for source in sources
    }
    extras = set(PYPROJECT["project"]["optional-dependencies"])
    installs = [i["value"] for i in build.all("RUN") if "pip install" in i["value"]]
    assert installs, "the build stage installs the package"

    for command in installs:
        words = shlex.split(command)
        targets = [w for w in words[words.index("install") + 1 :] if not w.startswith("-")]
        assert targets, command
        for target in targets:
            path, _, wanted = target.partition("[")
            assert path == ".", f"{target}: the project itself, from the copied sources"
            assert {e.strip() for e in wanted.rstrip("]").split(",") if e.strip()} <= extras
    assert "pyproject.toml" in copied
    assert PYPROJECT["project"]["readme"] in copied, "setuptools reads it while building"


def test_every_package_pyproject_builds_is_copied(stages: list[Stage]) -> None:
    """A top-level package missing from the image installs a runtime without it, silently."""
    copied = {
        PurePosixPath(source.rstrip("/")).name
        for sources, _, origin in _copies(stages[0])
        if origin is None
        for source in sources
    }
    patterns = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    tops = {p.split(".")[0].rstrip("*") for p in patterns}

    assert tops <= copied, f"packages not copied into the image: {sorted(tops - copied)}"
    for top in tops:
        assert (ROOT / top).is_dir()


@pytest.fixture(scope="module")
def connector_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("template")
    config = root / "cookiecutter.yaml"
    config.write_text(yaml.safe_dump({"replay_dir": str(root / "replay")}))
    return generate({"connector_name": "image-check"}, root, no_input=True, config_file=config)


def test_a_generated_connector_image_builds_on_the_runtime_image(
    connector_repo: Path, stages: list[Stage]
) -> None:
    """The generated Dockerfile copies what its repository has, keeps the runtime's user,
    entrypoint and health check (it sets none of its own), and puts the descriptor set
    where its environment and ConfigMap say."""
    built = parse_stages(DockerfileParser(path=str(connector_repo / "Dockerfile")))
    final = built[-1]
    names = {s.name for s in built}

    assert final.base == "kafka-connectors:0.1.0"
    assert final.last("USER") == stages[-1].last("USER")
    for kind in ("ENTRYPOINT", "CMD", "HEALTHCHECK", "EXPOSE"):
        assert not final.all(kind), f"{kind} comes from the runtime image"
    for stage in built:
        for sources, _, origin in _copies(stage):
            if origin is not None:
                assert origin in names, origin
                continue
            for source in sources:
                assert (connector_repo / source).exists(), source
                assert not _ignored(source.rstrip("/"), connector_repo), source
    env = dict(re.findall(r"(\w+)=(\S+)", final.last("ENV")))
    descriptors = [dest for _, dest, origin in _copies(final) if origin == "descriptors"]
    assert descriptors == [env["PROTO_DESCRIPTOR_SET"]]
    configmap = yaml.safe_load((connector_repo / "k8s" / "configmap.yaml").read_text())
    assert configmap["data"]["PROTO_DESCRIPTOR_SET"] == env["PROTO_DESCRIPTOR_SET"]
    for name in ("CONNECTOR_NAME", "TOPICS", "TOPIC_SCHEMAS", "TRANSFORMS", "WRITER"):
        assert configmap["data"][name] == env[name], name

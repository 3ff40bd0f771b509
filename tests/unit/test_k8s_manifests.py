"""Kubernetes manifests (the template's, per writer, and `deploy/`) against the schemas and
against the runtime they deploy.

Schemas come from kubernetes-validate, which bundles the JSON schemas of each Kubernetes
release, so this runs offline; strict mode makes a misspelt field an error instead of a
field the API server silently drops. Beyond the schemas: the probes name the runtime's
health endpoints on METRICS_PORT, the ConfigMap and Secret carry exactly the variables of
`.env.example`, secrets stay out of the ConfigMap, and the pod runs as the image's user.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser
from pydantic import SecretStr

from connectors.cli.new import generate
from connectors.config.settings import KafkaSettings, RuntimeSettings, ShutdownSettings, env_name
from connectors.core.registry import WRITERS
from tests.conftest import ROOT

WRITER_CHOICES = ("kv", "s3", "http", "kafka")
# The oldest release still commonly run, and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
# What the runtime's health server answers on METRICS_PORT (connectors/observability/health).
RUNTIME_ENDPOINTS = frozenset({"/metrics", "/livez", "/readyz", "/healthz"})
METRICS_PORT = RuntimeSettings.model_fields["metrics_port"].default
# Variables the runtime reads and every generated connector sets (the brief's list).
RUNTIME_VARIABLES = {
    "READER", "WRITER", "TOPICS", "TRANSFORMS", "TRANSFORM_MODULES", "CONNECTOR_NAME",
    "KAFKA_BOOTSTRAP_SERVERS", "KAFKA_GROUP_ID", "KAFKA_AUTO_OFFSET_RESET", "TOPIC_SCHEMAS",
    "PROTO_DESCRIPTOR_SET", "PROTO_MODULES", "BATCH_MAX_MESSAGES", "BATCH_MAX_WAIT_MS",
    "METRICS_PORT",
}  # fmt: skip
# Read by the AWS credential chain, not by a settings model of ours.
AWS_CREDENTIALS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
# Not SecretStr, but a URL that may carry a password.
SECRET_BY_CONTENT = {"KV_URL"}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One repository per writer choice, generated with the template's defaults."""
    root = tmp_path_factory.mktemp("template")
    config = root / "cookiecutter.yaml"
    config.write_text(yaml.safe_dump({"replay_dir": str(root / "replay")}))
    return {
        writer: generate(
            {"connector_name": f"k8s-{writer}", "writer": writer},
            root / writer,
            no_input=True,
            config_file=config,
        )
        for writer in WRITER_CHOICES
    }


def manifest_dirs(generated: dict[str, Path]) -> Iterator[tuple[str, Path]]:
    for writer, repo in generated.items():
        yield f"template[{writer}]", repo / "k8s"
    yield "deploy", ROOT / "deploy" / "kubernetes"


def resources(directory: Path) -> list[dict[str, Any]]:
    docs = []
    for path in sorted(directory.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


#: Kinds defined by CRDs, validated against the CRDs' own schemas (tests/k8s/validate.mjs).
CUSTOM_KINDS = {"PodMonitor", "ScaledObject"}
K8S_TOOLS = ROOT / "tests" / "k8s"


def optional_resources(directory: Path) -> list[dict[str, Any]]:
    """What is applied only on request (KEDA autoscaling)."""
    return [
        doc
        for path in sorted((directory / "keda").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def secret_names(directory: Path) -> dict[str, str]:
    """The variables of the generated Secret, from the committed example of its env file."""
    values = {}
    for line in (directory / "secrets.env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def env_example(repo: Path) -> dict[str, str]:
    values = {}
    for line in (repo / ".env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schemas(
    generated: dict[str, Path], version: str
) -> None:
    checked, errors = 0, []
    for where, directory in manifest_dirs(generated):
        for doc in resources(directory) + optional_resources(directory):
            if doc["kind"] in CUSTOM_KINDS:
                continue
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                errors.append(f"{where} {doc['kind']} at {list(exc.path)}: {exc.message}")
            checked += 1
    assert not errors, "\n".join(errors)
    # ConfigMap, Deployment, PodDisruptionBudget in each place.
    assert checked == 3 * (len(WRITER_CHOICES) + 1)


@pytest.fixture(scope="module")
def crd_validator() -> Path:
    """The CRD schemas from the npm registry (installed once, then offline)."""
    if not (K8S_TOOLS / "node_modules").is_dir():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--silent"],
            cwd=K8S_TOOLS,
            check=True,
            timeout=300,
        )
    return K8S_TOOLS / "validate.mjs"


def validate_custom(validator: Path, docs: list[tuple[str, dict[str, Any]]]) -> str:
    done = subprocess.run(
        ["node", str(validator)],
        input=json.dumps(docs),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.stdout + done.stderr if done.returncode else ""


def test_custom_resources_validate_against_their_crds(
    generated: dict[str, Path], crd_validator: Path
) -> None:
    docs = [
        (where, doc)
        for where, directory in manifest_dirs(generated)
        for doc in resources(directory) + optional_resources(directory)
        if doc["kind"] in CUSTOM_KINDS
    ]
    assert sorted({doc["kind"] for _, doc in docs}) == ["PodMonitor", "ScaledObject"]
    assert len(docs) == 2 * (len(WRITER_CHOICES) + 1)
    assert validate_custom(crd_validator, docs) == ""
    # The validator does catch a misfit: the scaler's lag threshold as a number, no target.
    broken = dict(docs[-1][1], spec={"triggers": [{"type": "kafka", "metadata": {"x": 1}}]})
    assert "scaleTargetRef" in validate_custom(crd_validator, [("broken", broken)])


def test_no_secret_with_placeholder_values_is_applied(generated: dict[str, Path]) -> None:
    """`kubectl apply -k` applies no Secret from the repository: it is generated from a
    git-ignored env file, so a placeholder can never overwrite the real one."""
    for where, directory in manifest_dirs(generated):
        assert not [d for d in resources(directory) if d["kind"] == "Secret"], where
        kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
        (generator,) = kustomization["secretGenerator"]
        assert generator["envs"] == ["secrets.env"], where
        assert not (directory / "secrets.env").exists(), where
        ignores = [directory / ".gitignore", directory.parent / ".gitignore"]
        ignored = "".join(p.read_text() for p in ignores if p.exists())
        assert "secrets.env" in ignored, f"{where}: secrets.env is not git-ignored"
        deployment = one(resources(directory), "Deployment")
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        refs = {r["secretRef"]["name"] for r in container["envFrom"] if "secretRef" in r}
        assert refs == {generator["name"]}, where


def test_liveness_cannot_restart_pods_for_a_dependency_that_is_down(
    generated: dict[str, Path],
) -> None:
    """/healthz turns unhealthy while a sink is down (every partition blocked or stuck);
    only /livez, which fails for a wedged pipeline alone, may restart a pod."""
    for where, directory in manifest_dirs(generated):
        (container,) = one(resources(directory), "Deployment")["spec"]["template"]["spec"][
            "containers"
        ]
        assert container["livenessProbe"]["httpGet"]["path"] == "/livez", where
        budget = one(resources(directory), "PodDisruptionBudget")["spec"]
        assert budget["maxUnavailable"] == 1, where


def test_kustomization_lists_every_manifest(generated: dict[str, Path]) -> None:
    for where, directory in manifest_dirs(generated):
        kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
        files = {p.name for p in directory.glob("*.yaml")} - {"kustomization.yaml"}
        assert set(kustomization["resources"]) == files, where


def test_probes_and_scraping_use_the_runtime_endpoints_on_metrics_port(
    generated: dict[str, Path],
) -> None:
    for where, directory in manifest_dirs(generated):
        docs = resources(directory)
        config = one(docs, "ConfigMap")["data"]
        pod = one(docs, "Deployment")["spec"]["template"]
        (container,) = pod["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}

        assert config["METRICS_PORT"] == str(METRICS_PORT), where
        paths = {}
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            get = container[probe]["httpGet"]
            port = ports.get(get["port"], get["port"])
            assert port == METRICS_PORT, f"{where} {probe} port {get['port']}"
            paths[probe] = get["path"]
        assert paths == {
            "livenessProbe": "/livez",
            "readinessProbe": "/readyz",
            "startupProbe": "/livez",
        }, where
        assert set(paths.values()) <= RUNTIME_ENDPOINTS

        annotations = pod["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", where
        assert annotations["prometheus.io/port"] == str(METRICS_PORT), where
        assert annotations["prometheus.io/path"] in RUNTIME_ENDPOINTS, where
        assert annotations["prometheus.io/path"] == "/metrics", where


def test_the_pod_runs_as_the_images_user_and_outlives_the_shutdown_grace(
    generated: dict[str, Path],
) -> None:
    image_user = DockerfileParser(path=str(ROOT / "Dockerfile")).structure
    uid, _, gid = [i["value"] for i in image_user if i["instruction"] == "USER"][-1].partition(":")
    grace = ShutdownSettings.model_fields["grace_s"].default

    for where, directory in manifest_dirs(generated):
        spec = one(resources(directory), "Deployment")["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        security = spec["securityContext"]
        assert security["runAsNonRoot"] is True, where
        assert (str(security["runAsUser"]), str(security["runAsGroup"])) == (uid, gid), where
        assert container["securityContext"]["readOnlyRootFilesystem"] is True, where
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert {"/tmp", "/var/lib/connector"} <= mounts, f"{where}: writable paths"
        assert spec["terminationGracePeriodSeconds"] > grace, where
        assert container["resources"]["requests"] and container["resources"]["limits"], where


def test_config_and_secret_carry_exactly_the_env_example(generated: dict[str, Path]) -> None:
    for writer, repo in generated.items():
        docs = resources(repo / "k8s")
        config = one(docs, "ConfigMap")
        stored = secret_names(repo / "k8s")
        names = set(env_example(repo))

        assert set(config["data"]) | set(stored) == names, writer
        assert not set(config["data"]) & set(stored), writer
        (generator,) = yaml.safe_load((repo / "k8s/kustomization.yaml").read_text())[
            "secretGenerator"
        ]
        (container,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
        sources = {
            ref.get("configMapRef", {}).get("name") or ref["secretRef"]["name"]
            for ref in container["envFrom"]
        }
        assert sources == {config["metadata"]["name"], generator["name"]}, writer


def _secret_names(model: Any) -> set[str]:
    return {
        env_name(model, name)
        for name, info in model.model_fields.items()
        if info.annotation is SecretStr or "SecretStr" in str(info.annotation)
    }


@pytest.mark.parametrize("writer", WRITER_CHOICES)
def test_the_env_example_sets_every_variable_of_its_writer(
    generated: dict[str, Path], writer: str
) -> None:
    repo = generated[writer]
    names = set(env_example(repo))
    settings = WRITERS.get(writer).settings
    shared = {env_name(KafkaSettings, f) for f in KafkaSettings.model_fields}
    # The Kafka writer inherits the reader's connection settings; only its own must be set.
    writer_names = {env_name(settings, field) for field in settings.model_fields} - shared
    known = (
        writer_names
        | {env_name(RuntimeSettings, f) for f in RuntimeSettings.model_fields}
        | {env_name(KafkaSettings, f) for f in KafkaSettings.model_fields}
        | (AWS_CREDENTIALS if writer == "s3" else set())
    )

    assert RUNTIME_VARIABLES <= names
    assert writer_names <= names, f"missing: {sorted(writer_names - names)}"
    assert names <= known, f"not read by the runtime: {sorted(names - known)}"
    secret = secret_names(repo / "k8s")
    must_hide = (_secret_names(settings) | SECRET_BY_CONTENT | AWS_CREDENTIALS) & names
    assert must_hide <= set(secret), f"in the ConfigMap but secret: {sorted(must_hide)}"


def test_the_template_names_no_writer_the_runtime_lacks() -> None:
    choices = re.search(
        r'"writer": \[([^\]]*)\]', (ROOT / "templates/connector/cookiecutter.json").read_text()
    )
    assert choices is not None
    assert tuple(re.findall(r'"(\w+)"', choices[1])) == WRITER_CHOICES
    assert set(WRITER_CHOICES) <= set(WRITERS.names())

"""`connector topics lint`: a bad catalog is refused offline, exit 2, one line per problem
naming the file and the field; and the plan computed from a cluster's state as data."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.cli.main import main
from connectors.config.catalog import load_catalog
from connectors.config.catalog.plan import (
    AclBinding,
    ClusterState,
    Recorded,
    TopicState,
    desired_acls,
    plan,
)

ROOT = Path(__file__).resolve().parents[2]
TYPES = str(ROOT / "transforms" / "proto" / "edge.binpb")
GOOD = """\
name: {name}
owner: team-edge
type: edge.v1.ZoneSettingsChanged
partitions: 3
replication: 3
"""


def good(name: str = "orders") -> str:
    return GOOD.format(name=name)


def with_line(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new)


# (files, expected lines: {dir} is the catalog folder)
BAD = {
    "low replication": (
        {"orders.yaml": with_line(good(), "replication: 3", "replication: 1")},
        ["{dir}/orders.yaml: replication: 1 is below 3: one broker's loss would lose data or "
         "stop writes (--allow-low-replication for a test cluster)"],
    ),
    "unknown type": (
        {"orders.yaml": with_line(good(), "ZoneSettingsChanged", "Nope")},
        ["{dir}/orders.yaml: type: 'edge.v1.Nope' is not defined in the descriptor set "
         "(PROTO_DESCRIPTOR_SET or --descriptor-set)"],
    ),
    "duplicate topic": (
        {"orders.yaml": good(), "sub/orders.yaml": good()},
        ["{dir}/sub/orders.yaml: name: topic 'orders' is declared in {dir}/orders.yaml too"],
    ),
    "invalid name": (
        {"orders.yaml": with_line(good(), "name: orders", "name: or ders!")},
        ["{dir}/orders.yaml: name: a Kafka topic name (letters, digits, '.', '_' or '-', "
         "1-249 characters, not '.' or '..'); 'or ders!' is not one"],
    ),
    "no partitions": (
        {"orders.yaml": with_line(good(), "partitions: 3", "partitions: 0")},
        ["{dir}/orders.yaml: partitions: Input should be greater than or equal to 1"],
    ),
    "misspelt field": (
        {"orders.yaml": good() + "retension: {ms: 1000}\n"},
        ["{dir}/orders.yaml: retension: Extra inputs are not permitted"],
    ),
    "cleanup policy": (
        {"orders.yaml": good() + "cleanup_policy: forever\n"},
        ["{dir}/orders.yaml: cleanup_policy: Input should be 'delete', 'compact' or "
         "'compact,delete'"],
    ),
    "owned config": (
        {"orders.yaml": good() + "configs: {retention.ms: 1000}\n"},
        ["{dir}/orders.yaml: configs: retention.ms is set by its own field (retention.ms)"],
    ),
    "bad principal": (
        {"orders.yaml": good() + "acls: {produce: [alice]}\n"},
        ["{dir}/orders.yaml: acls.produce: a principal such as User:alice; 'alice' is not one"],
    ),
    "no group prefix": (
        {"orders.yaml": good() + "acls: {consume: [{principal: User:bob}]}\n"},
        ["{dir}/orders.yaml: acls.consume.0.group_prefix: Field required"],
    ),
    "not yaml": (
        {"orders.yaml": good() + "configs: {a: [1, 2}\n"},
        ["{dir}/orders.yaml: line 6: not YAML: expected ',' or ']', but got '}}'"],
    ),
    "not a mapping": (
        {"orders.yaml": "- name: orders\n"},
        ["{dir}/orders.yaml: a mapping of topic fields (name, type, ...)"],
    ),
    "missing owner": (
        {"orders.yaml": with_line(good(), "owner: team-edge\n", "")},
        ["{dir}/orders.yaml: owner: Field required"],
    ),
    "file named otherwise": (
        {"payments.yaml": good()},
        ["{dir}/payments.yaml: name: the file of topic 'orders' is named orders.yaml, not "
         "payments.yaml"],
    ),
    "min isr above replication": (
        {"orders.yaml": good() + "configs: {min.insync.replicas: 4}\n"},
        ["{dir}/orders.yaml: configs.min.insync.replicas: an integer at most the replication "
         "(3); '4' is not"],
    ),
    "two problems, two lines": (
        {"orders.yaml": with_line(good(), "partitions: 3", "partitions: -1") + "x: 1\n"},
        ["{dir}/orders.yaml: partitions: Input should be greater than or equal to 1",
         "{dir}/orders.yaml: x: Extra inputs are not permitted"],
    ),
    "empty folder": ({}, ["{dir}: no topic file (*.yaml, *.yml)"]),
}  # fmt: skip


def write(root: Path, files: dict[str, str]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_catalog_exits_2_naming_file_and_field(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files, expected = BAD[case]
    root = tmp_path / "catalog"
    write(root, files)
    code = main(["topics", "lint", str(root)], {"PROTO_DESCRIPTOR_SET": TYPES})
    lines = capsys.readouterr().err.splitlines()
    assert code == 2
    assert lines == [line.format(dir=root) for line in expected]


def test_good_catalog_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, {"orders.yaml": good(), "team/zones.yaml": good("zones")})
    assert main(["topics", "lint", str(tmp_path)], {"PROTO_DESCRIPTOR_SET": TYPES}) == 0
    assert "2 topics: the catalog is valid" in capsys.readouterr().err


def test_low_replication_allowed_by_flag(tmp_path: Path) -> None:
    write(tmp_path, {"orders.yaml": with_line(good(), "replication: 3", "replication: 1")})
    args = ["topics", "lint", str(tmp_path), "--allow-low-replication"]
    assert main(args, {"PROTO_DESCRIPTOR_SET": TYPES}) == 0


ACLS = """\
retention: {ms: 1000}
acls:
  produce: [User:api]
  consume: [{principal: User:reader, group_prefix: readers-}]
"""


def catalog_of(tmp_path: Path, text: str) -> object:
    write(tmp_path, {"orders.yaml": text})
    return load_catalog(tmp_path)


def test_plan_of_an_empty_cluster_creates_everything(tmp_path: Path) -> None:
    catalog = catalog_of(tmp_path, good() + ACLS)
    made = plan(catalog, ClusterState())  # type: ignore[arg-type]
    kinds = sorted(c.kind for c in made.changes)
    assert kinds == ["acl+"] * 5 + ["create", "record"]
    assert not made.refused


def test_plan_of_a_matching_cluster_is_empty(tmp_path: Path) -> None:
    catalog = catalog_of(tmp_path, good() + ACLS)
    spec = catalog.topics["orders"]  # type: ignore[attr-defined]
    other = AclBinding("User:someone", "topic", "unmanaged", "literal", "READ")
    state = ClusterState(
        {"orders": TopicState("orders", 3, 3, spec.topic_configs())},
        desired_acls(spec) | {other},
        {"orders": Recorded(spec.type, ("readers-",))},
    )
    made = plan(catalog, state)  # type: ignore[arg-type]
    assert made.changes == [] and made.refused == []
    assert made.render() == "no changes: the cluster matches"


def test_plan_refuses_what_kafka_cannot_do(tmp_path: Path) -> None:
    catalog = catalog_of(tmp_path, good())
    state = ClusterState(
        {"orders": TopicState("orders", 6, 2, {"cleanup.policy": "delete", "x.y": "1"})},
        {AclBinding("User:old", "topic", "orders", "literal", "WRITE")},
        {"orders": Recorded("edge.v1.EdgeZoneConfig"), "gone": Recorded("a.B")},
    )
    state.topics["gone"] = TopicState("gone", 1, 3, {})
    made = plan(catalog, state)  # type: ignore[arg-type]
    assert made.refused == [
        "topic orders: partitions 6 -> 3: Kafka cannot remove partitions (make a new topic)",
        "topic orders: replication 2 -> 3: not changed in place (reassign its partitions with "
        "kafka-reassign-partitions)",
        "topic orders: type edge.v1.EdgeZoneConfig -> edge.v1.ZoneSettingsChanged: readers of "
        "the topic would misread its records (make a new topic, or --allow-type-change)",
        "topic gone: no longer in the catalog; deleting it needs --allow-delete",
    ]
    texts = [c.text for c in made.changes]
    assert "~ topic orders: config -x.y (was 1)" in texts
    assert "- acl User:old WRITE topic orders" in texts
    allowed = plan(catalog, state, allow_type_change=True, allow_delete=True)  # type: ignore[arg-type]
    assert len(allowed.refused) == 2
    assert "- topic gone (not in the catalog)" in [c.text for c in allowed.changes]


def runtime_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    write(tmp_path / "catalog", {"orders.yaml": good()})
    return {
        "CONNECTOR_NAME": "c",
        "TOPICS": "orders",
        "TOPIC_CATALOG": str(tmp_path / "catalog"),
        "PROTO_DESCRIPTOR_SET": TYPES,
        "KV_URL": f"lmdb:{tmp_path / 'kv'}",
        **extra,
    }


def test_topic_catalog_binds_the_type_without_topic_schemas(tmp_path: Path) -> None:
    from connectors.config.pipeline import resolve

    pipeline = resolve(runtime_env(tmp_path))
    assert pipeline.schemas["orders"].type_name == "edge.v1.ZoneSettingsChanged"


def test_topic_schemas_contradicting_the_catalog_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = runtime_env(tmp_path, TOPIC_SCHEMAS="orders=edge.v1.EdgeZoneConfig")
    assert main(["check"], env) == 2
    assert capsys.readouterr().err.splitlines() == [
        "config error: TOPIC_SCHEMAS='orders=edge.v1.EdgeZoneConfig': the type TOPIC_CATALOG "
        "declares for 'orders' (edge.v1.ZoneSettingsChanged); 'edge.v1.EdgeZoneConfig' "
        "contradicts it"
    ]


def test_a_broken_catalog_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = runtime_env(tmp_path)
    (tmp_path / "catalog" / "orders.yaml").write_text(good() + "x: 1\n")
    assert main(["check"], env) == 2
    err = capsys.readouterr().err
    assert "config error: TOPIC_CATALOG=" in err and "x: Extra inputs are not permitted" in err


def test_the_template_topic_file_is_a_valid_catalog_entry(tmp_path: Path) -> None:
    from cookiecutter.main import cookiecutter

    from connectors.cli.new import template_dir

    extra = {"connector_name": "zone-audit", "topics": "zone-events.v1,other.v1"}
    repo = Path(cookiecutter(str(template_dir()), no_input=True, extra_context=extra,
                             output_dir=str(tmp_path)))  # fmt: skip
    catalog = load_catalog(repo / "topics")
    spec = catalog.topics["zone-events.v1"]
    assert (spec.owner, spec.type, spec.replication) == (
        "team-zone-audit", "zone_audit.v1.Event", 3)  # fmt: skip
    assert [(c.principal, c.group_prefix) for c in spec.acls.consume] == [
        ("User:zone-audit", "zone-audit")
    ]

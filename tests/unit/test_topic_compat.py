"""`connector topics lint --against REF`: a type change that breaks the topic's readers is
flagged (exit 2, one line naming the file, the field and the change); compatible changes
pass. REF is a previous catalog folder or a git revision."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from grpc_tools import protoc

from connectors.cli.main import main

OLD = """syntax = "proto3";
package shop.v1;
message Address { string city = 1; }
message Order { string id = 1; int64 cents = 2; repeated string tags = 3; Address ship = 4;
  string note = 5; }
message Refund { string id = 1; }
"""

CHANGES = {
    "removed": ("string note = 5;", "", ["shop.v1.Order.note (5) removed without reserving "
                                         "its number"]),
    "reserved": ("string note = 5;", "reserved 5;", []),
    "added": ("string note = 5;", "string note = 5; bool gift = 6;", []),
    "renumbered": ("int64 cents = 2;", "int64 cents = 7;", ["shop.v1.Order.cents (2) "
                                                            "renumbered to 7"]),
    "retyped": ("int64 cents = 2;", "string cents = 2;", ["shop.v1.Order.cents (2) changed "
                                                          "type int64 -> string"]),
    "cardinality": ("repeated string tags = 3;", "string tags = 3;", [
        "shop.v1.Order.tags (3) changed type repeated string -> string"]),
    "nested": ("string city = 1;", "int32 city = 1;", ["shop.v1.Address.city (1) changed "
                                                       "type string -> int32"]),
}  # fmt: skip


def descriptors(tmp: Path, text: str, name: str) -> Path:
    src = tmp / f"src-{name}"
    src.mkdir()
    (src / "shop.proto").write_text(text)
    out = tmp / f"{name}.binpb"
    args = ["protoc", f"-I{src}", "--include_imports", f"--descriptor_set_out={out}", "shop.proto"]
    assert protoc.main(args) == 0
    return out


def catalog(root: Path, type_name: str = "shop.v1.Order") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "orders.yaml").write_text(
        f"name: orders\nowner: shop\ntype: {type_name}\npartitions: 3\nreplication: 3\n"
    )
    return root


@pytest.mark.parametrize("case", sorted(CHANGES))
def test_a_change_of_the_message(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new, expected = CHANGES[case]
    old_set = descriptors(tmp_path, OLD, "old")
    new_set = descriptors(tmp_path, OLD.replace(old, new), "new")
    before, after = catalog(tmp_path / "before"), catalog(tmp_path / "after")
    code = main(
        ["topics", "lint", str(after), "--descriptor-set", str(new_set), "--against",
         str(before), "--against-descriptor-set", str(old_set)],
        {},
    )  # fmt: skip
    lines = capsys.readouterr().err.splitlines()
    if expected:
        assert code == 2
        assert lines == [f"{after}/orders.yaml: type: shop.v1.Order: {e}" for e in expected]
    else:
        assert code == 0, lines


def test_another_type_for_a_topic_against_a_git_revision(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    root = catalog(repo / "catalog")
    types = descriptors(tmp_path, OLD, "old")
    (repo / "shop.binpb").write_bytes(types.read_bytes())

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)

    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base")
    catalog(root, "shop.v1.Refund")
    code = main(["topics", "lint", str(root), "--against", "HEAD"],
                {"PROTO_DESCRIPTOR_SET": str(repo / "shop.binpb")})  # fmt: skip
    assert code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{root}/orders.yaml: type: shop.v1.Order -> shop.v1.Refund: readers of the topic "
        "expect the former type"
    ]
    # a field removed from the message, with the descriptor set changed in the same commit
    catalog(root)
    new = descriptors(tmp_path, OLD.replace("string note = 5;", ""), "new")
    (repo / "shop.binpb").write_bytes(new.read_bytes())
    code = main(["topics", "lint", str(root), "--against", "HEAD"],
                {"PROTO_DESCRIPTOR_SET": str(repo / "shop.binpb")})  # fmt: skip
    assert code == 2
    assert "shop.v1.Order.note (5) removed without reserving its number" in capsys.readouterr().err
    code = main(["topics", "lint", str(root), "--against", "no-such-ref"],
                {"PROTO_DESCRIPTOR_SET": str(repo / "shop.binpb")})  # fmt: skip
    assert code == 2
    assert "config error: --against='no-such-ref': a catalog folder or a git revision" in (
        capsys.readouterr().err
    )

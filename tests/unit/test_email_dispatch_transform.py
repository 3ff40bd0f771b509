"""The email-dispatch example's transform, `render_email`, run by `connectors.testing`'s
`run_transform` against a real template registry on loopback (`harness.email_services`)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from google.protobuf.descriptor_pb2 import FileDescriptorSet

from connectors import ConfigError, RetriableError
from connectors.config.pipeline import resolve
from connectors.config.schemas import find_message_class, load_descriptor_set
from connectors.testing import run_transform
from harness.email_services import EMAIL_DESCRIPTORS, TemplateRegistry, sample_templates

TEMPLATES = sample_templates(3)
WELCOME = {"name": "Ann", "code": "042", "plan": "pro"}


@pytest.fixture(scope="module")
def email_dispatch() -> ModuleType:
    """The example's module, imported as `TRANSFORM_MODULES=email_dispatch` would."""
    sys.path.insert(0, str(EMAIL_DESCRIPTORS.parent))
    os.environ.setdefault("EMAIL_TEMPLATES_URL", "http://127.0.0.1:9")
    import email_dispatch

    return email_dispatch


@pytest.fixture
def registry(email_dispatch: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with TemplateRegistry(TEMPLATES) as server:
        monkeypatch.setattr(email_dispatch, "REGISTRY", server.url())
        yield server


def request(email_id: str, template_id: str, **variables: str) -> Any:
    pool = load_descriptor_set(EMAIL_DESCRIPTORS)
    cls = find_message_class("email.v1.EmailRequested", (pool,))
    assert cls is not None
    return cls(
        email_id=email_id,
        template_id=template_id,
        recipient=f"{email_id}@example.com",
        variables=variables,
    )


def test_renders_the_template_into_an_email_keyed_by_its_id(registry: Any) -> None:
    [outcome] = run_transform("render_email", [request("e1", "tpl-00", **WELCOME)])
    assert outcome.poison is None and outcome.retry is None
    [entry] = outcome.entries
    assert entry.key == b"e1"
    email = entry.message
    assert email.DESCRIPTOR.full_name == "email.v1.Email"
    assert (email.email_id, email.to, email.template_id) == ("e1", "e1@example.com", "tpl-00")
    assert email.subject == "[00] Hello Ann"
    assert email.text == "Hi Ann, your code is 042 on the pro plan.\n"
    assert email.html == "<p>Hi Ann, your code is <b>042</b> on the pro plan.</p>"
    assert email.template_version == TEMPLATES["tpl-00"]["version"]


def test_html_is_escaped_and_text_is_not(registry: Any) -> None:
    [outcome] = run_transform(
        "render_email", [request("e1", "tpl-01", name="<script>x</script>", code="1")]
    )
    email = outcome.entries[0].message
    assert "&lt;script&gt;" in email.html and "<script>" not in email.html
    assert "<script>x</script>" in email.text


def test_a_missing_variable_is_poison_naming_it(registry: Any) -> None:
    ok, missing = run_transform(
        "render_email", [request("e1", "tpl-01", name="Bo", code="7"), request("e2", "tpl-01")]
    )
    assert ok.entries and missing.entries == []
    assert missing.poison is not None
    assert missing.poison.stage == "transform:render_email"
    assert "'name' is undefined" in str(missing.poison)


def test_an_unknown_template_is_poison_and_asked_for_once(registry: Any) -> None:
    outcomes = run_transform(
        "render_email", [request(f"e{n}", "tpl-retired", **WELCOME) for n in range(5)]
    )
    assert all(o.poison is not None and o.entries == [] for o in outcomes)
    assert {o.poison.stage for o in outcomes if o.poison} == {"transform:render_email"}
    assert "404" in str(outcomes[0].poison)
    assert registry.fetches["tpl-retired"] == 1  # the 404 is cached like a template


def test_a_registry_503_asks_for_a_retry_not_a_dead_letter(
    email_dispatch: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    with TemplateRegistry(TEMPLATES, unavailable=1.0) as down:
        monkeypatch.setattr(email_dispatch, "REGISTRY", down.url())
        [outcome] = run_transform("render_email", [request("e1", "tpl-00", **WELCOME)])
    assert outcome.poison is None and outcome.entries == []
    assert isinstance(outcome.retry, RetriableError)
    assert "503" in str(outcome.retry)


def test_a_registry_that_does_not_answer_asks_for_a_retry(
    email_dispatch: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    with TemplateRegistry(TEMPLATES) as gone:
        url = gone.url()
    monkeypatch.setattr(email_dispatch, "REGISTRY", url)  # closed: connection refused
    [outcome] = run_transform("render_email", [request("e1", "tpl-00", **WELCOME)])
    assert isinstance(outcome.retry, RetriableError)


def test_concurrent_records_share_one_fetch_per_template(registry: Any) -> None:
    messages = [request(f"e{n}", f"tpl-0{n % 3}", **WELCOME) for n in range(60)]
    outcomes = run_transform("render_email", messages, concurrency=16)
    assert [o.entries[0].key for o in outcomes] == [f"e{n}".encode() for n in range(60)]
    assert dict(registry.fetches) == {"tpl-00": 1, "tpl-01": 1, "tpl-02": 1}


def test_a_request_without_recipient_is_poison(registry: Any) -> None:
    message = request("e1", "tpl-00", **WELCOME)
    message.recipient = ""
    [outcome] = run_transform("render_email", [message])
    assert outcome.poison is not None and "recipient" in str(outcome.poison)
    assert registry.total_fetches == 0


@pytest.mark.parametrize("value", ["", "templates.internal", "ftp://templates.internal"])
def test_the_registry_url_is_checked_at_import(email_dispatch: ModuleType, value: str) -> None:
    with pytest.raises(ConfigError, match="EMAIL_TEMPLATES_URL"):
        email_dispatch.registry_from({"EMAIL_TEMPLATES_URL": value})
    assert email_dispatch.registry_from({"EMAIL_TEMPLATES_URL": "https://t.internal/"}) == (
        "https://t.internal"
    )


def test_the_descriptor_set_is_the_one_the_proto_builds(tmp_path: Path) -> None:
    """`email.binpb` is rebuilt from `email.proto` with protoc and compared as descriptors
    (not bytes, which may differ between protoc versions)."""
    from grpc_tools import protoc

    built = tmp_path / "email.binpb"
    folder = EMAIL_DESCRIPTORS.parent
    assert (
        protoc.main(
            [
                "protoc",
                f"-I{folder}",
                "--include_imports",
                f"--descriptor_set_out={built}",
                str(folder / "email.proto"),
            ]
        )
        == 0
    )
    shipped = FileDescriptorSet.FromString(EMAIL_DESCRIPTORS.read_bytes())
    assert FileDescriptorSet.FromString(built.read_bytes()) == shipped


def test_the_env_file_is_a_configuration_the_runtime_accepts(email_dispatch: ModuleType) -> None:
    environ = {}
    for line in (EMAIL_DESCRIPTORS.parent / "email-dispatch.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            environ[name] = value
    environ["PROTO_DESCRIPTOR_SET"] = str(EMAIL_DESCRIPTORS)
    pipeline = resolve(environ)
    assert pipeline.chain.names == ["render_email"]
    assert pipeline.chain.kinds == ("async",)
    assert pipeline.writer.name == "http"

"""`connector check` through the real command: each transform's kind, and exit 2 naming a
transform whose signature does not fit its registration."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from connectors.cli.main import main
from connectors.core.transform_kinds import BatchTransform, kind_of, misfit

MODULE = textwrap.dedent(
    """
    from connectors import transform

    @transform("plain")
    def plain(message, ctx):
        return message

    @transform("fetching")
    async def fetching(message, ctx):
        return message

    @transform("bulk", batch=True)
    def bulk(messages, contexts):
        return messages

    @transform("bulk_async", batch=True)
    async def bulk_async(messages, contexts, *, extra=None):
        return messages

    class Renderer:
        async def __call__(self, message, ctx):
            return message

    transform("renderer")(Renderer())

    @transform("one_param_batch", batch=True)
    def one_param_batch(messages):
        return messages

    @transform("three_required")
    def three_required(message, ctx, template):
        return message

    transform("not_callable")(42)
    """
)


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("plugins")
    (directory / "shapes_transforms.py").write_text(MODULE)
    return directory


def check(plugin_dir: Path, transforms: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(plugin_dir),
        "CONNECTOR_NAME": "shapes",
        "TOPICS": "raw",
        "TOPIC_SCHEMAS": "raw=bytes",
        "TRANSFORM_MODULES": "shapes_transforms",
        "TRANSFORMS": transforms,
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",  # nothing listens: check connects to nothing
        **extra,
    }
    return subprocess.run(
        [sys.executable, "-m", "connectors.cli", "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_prints_each_kind_and_the_transform_settings(plugin_dir: Path) -> None:
    done = check(plugin_dir, "plain,fetching,bulk,bulk_async,renderer", TRANSFORM_CONCURRENCY="32")
    assert done.returncode == 0, done.stderr
    assert (
        "transforms: plain (sync) -> fetching (async) -> bulk (batch) -> bulk_async (batch) "
        "-> renderer (async)" in done.stdout
    )
    assert "TRANSFORM_CONCURRENCY=32" in done.stdout
    assert "TRANSFORM_CACHE_TTL_S=300" in done.stdout


def test_check_refuses_misfit_signatures_naming_each_transform(plugin_dir: Path) -> None:
    done = check(plugin_dir, "plain,one_param_batch,three_required,not_callable")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 3, done.stderr
    assert lines[0].startswith("config error: TRANSFORMS='one_param_batch': transform ")
    assert "fn(messages, contexts)" in lines[0] and "(messages)" in lines[0]
    assert lines[1].startswith("config error: TRANSFORMS='three_required': transform ")
    assert "fn(message, ctx)" in lines[1] and "template" in lines[1]
    assert lines[2].startswith("config error: TRANSFORMS='not_callable': transform ")
    assert "not int" in lines[2]
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TRANSFORM_CONCURRENCY", "0"),
        ("TRANSFORM_HTTP_TIMEOUT_S", "soon"),
        ("TRANSFORM_HTTP_VERIFY_TLS", "maybe"),
        ("TRANSFORM_HTTP_CA_FILE", "/nonexistent/ca.pem"),
        ("TRANSFORM_CACHE_TTL_S", "-1"),
        ("TRANSFORM_CACHE_MAX_ENTRIES", "many"),
    ],
)
def test_bad_transform_settings_exit_2_naming_the_variable(
    variable: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"CONNECTOR_NAME": "shapes", "TOPICS": "raw", "TOPIC_SCHEMAS": "raw=bytes"}
    assert main(["check"], {**env, variable: value}) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"config error: {variable}=")


def test_misfits_found_without_the_command() -> None:
    async def agen(message: bytes, ctx: object) -> AsyncIterator[bytes]:
        yield message

    def gen_batch(messages: list[bytes], contexts: list[object]) -> Iterator[bytes]:
        yield from messages

    def gen(message: bytes, ctx: object) -> Iterator[bytes]:
        yield message

    assert "not a generator" in (misfit(agen) or "")
    assert "not a generator" in (misfit(BatchTransform(gen_batch)) or "")
    assert misfit(gen) is None  # a per-record generator is an iterable of outputs
    assert misfit(lambda message, ctx, *rest, **named: None) is None
    assert misfit(lambda message: None) is not None
    assert kind_of(gen) == "sync" and kind_of(BatchTransform(gen_batch)) == "batch"
    assert kind_of(functools.partial(agen)) == "sync"  # an async generator is no coroutine
